"""Infrastructure shared by every layer, one implementation of each: settings base, disk helpers,
counters, ``backoff`` (every retry loop's waits), ``token_bucket`` (rate limits), ``tasks`` (a
background task whose death ends the process)."""
