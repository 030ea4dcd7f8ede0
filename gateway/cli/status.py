"""Exit statuses of the ``gateway`` commands beyond 0 and 1 (sysexits(3) where one fits)."""

EXIT_USAGE = 2  # the user's mistake: one line on stderr, never a traceback
EXIT_IO = 74  # sysexits' EX_IOERR: the data directory, the sink or an output cannot be written
