"""Durable directory operations shared by every file the gateway writes under its data directory.

A file's ``fsync`` makes its contents durable, not its name: POSIX leaves the directory entry to
an ``fsync`` of the directory itself (fsync(2), "Notes"), and ext4 and XFS can lose a new file or
a new directory after a power cut without it. These helpers raise ``OSError``; callers turn it
into their layer's error.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (files created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, *, durable: bool) -> None:
    """``mkdir -p path``; with ``durable`` every directory it creates is fsynced into its parent."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        # Made meanwhile by another thread or process (if it is not a directory, opens fail).
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory)
        if durable:
            fsync_dir(directory.parent)
