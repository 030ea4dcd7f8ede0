"""``gateway parse``: consume the raw Kinesis stream and produce parsed records
(:mod:`gateway.history.consumer`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.history.consumer import ConsumerOptions, consume
from gateway.ops import logs
from gateway.settings import load_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="FILE",
        help="settings with [sink.kinesis] (the raw stream to read, the parsed one to write)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="position file (default: <data_dir>/parse-checkpoint.json)",
    )
    p.add_argument(
        "--to-local",
        type=Path,
        metavar="DIR",
        help="write parsed records to a local sink here instead of the parsed stream",
    )
    p.add_argument(
        "--idle-exit", type=float, metavar="S", help="stop after S seconds without new raw records"
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    logs.configure(settings.log)
    options = ConsumerOptions(
        checkpoint=args.checkpoint, to_local=args.to_local, idle_exit_s=args.idle_exit
    )
    return consume(settings, options)
