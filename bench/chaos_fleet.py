"""``gateway simulate`` for the chaos run, its ACK log written line by line.

The simulator buffers its ACK log 64 KiB at a time: while a fault stops ACKs the last seconds of
them would sit in that buffer until ACKs resume, and the run would see them late (after the
fault, as if the recovery had brought them). A line-buffered log costs one write per ACK, a
trifle at the chaos run's rates. Arguments are ``gateway simulate``'s.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.cli import simulate
from gateway.cli.main import main
from gateway.fleet.simulator import FrameLog


class LineLog(FrameLog):
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="ascii", buffering=1)


if __name__ == "__main__":
    simulate.FrameLog = LineLog  # type: ignore[attr-defined]
    sys.exit(main(["simulate", *sys.argv[1:]]))
