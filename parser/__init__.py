"""Sans-I/O core of the EV gateway: device protocols, frame decoding and canonical records.

Nothing in this package touches a socket, a clock, asyncio or the settings: bytes go in, events,
reply bytes and records come out (enforced by ``tests/parser/test_architecture.py``).
"""
