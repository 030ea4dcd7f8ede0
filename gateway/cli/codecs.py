"""``gateway codecs``: the available codecs, and any that failed to load with the reason."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.pipeline.registry import CodecRegistry, default_layout_dirs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout-dir", action="append", type=Path, metavar="DIR")


def load_registry(extra: list[Path] | None) -> CodecRegistry:
    """The codecs of the project's layout directories, ``extra`` ones and plug-ins."""
    return CodecRegistry.load([*default_layout_dirs(), *(extra or [])])


def run(args: argparse.Namespace) -> int:
    registry = load_registry(args.layout_dir)
    problems = registry.problems()
    for name in registry.names():
        print(name if name not in problems else f"{name}  (unusable: {problems[name]})")
    return 0
