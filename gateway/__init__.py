"""Asyncio runtime of the EV gateway: listeners, pipeline, sinks, CLI."""
