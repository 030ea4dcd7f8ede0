"""Frames in, records out: accept, accumulators, tickets, the codec registry."""
