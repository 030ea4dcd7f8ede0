"""Infrastructure shared by every layer: settings base, disk helpers, counters."""
