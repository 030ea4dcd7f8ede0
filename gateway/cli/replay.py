"""``gateway replay``: re-parse raw records (archives, captures) like live ingest
(:mod:`gateway.history.replay`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.history import replay
from gateway.history.replay_inputs import InputOptions
from gateway.settings import load_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="raw-record files or directories (JSON lines, gzip or plain), or s3://BUCKET/PREFIX",
    )
    p.add_argument(
        "--capture",
        type=Path,
        metavar="FILE",
        help="a legacy capture: hex per line or binary (needs --device-id and --codec)",
    )
    p.add_argument("--device-id", help="device id of a legacy capture")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings: output sink (local or Kinesis), listener time zones",
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="write to this local sink")
    p.add_argument("--since", help="only frames received at or after this ISO time (UTC)")
    p.add_argument("--until", help="only frames received before this ISO time (UTC)")
    p.add_argument("--device", action="append", metavar="ID", help="only these devices")
    p.add_argument(
        "--codec",
        action="append",
        metavar="NAME",
        help="only these codecs (for --capture: the capture's codec)",
    )
    p.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="S3 endpoint for s3:// inputs (default: AWS_ENDPOINT_URL_S3, else AWS's)",
    )
    p.add_argument(
        "--s3-region",
        metavar="REGION",
        help="region for s3:// inputs (default: AWS_DEFAULT_REGION)",
    )
    p.add_argument(
        "--notifications",
        action="store_true",
        help="also write the notifications the rules raise, marked replayed, to the sink's "
        "notifications stream (never sent to SNS or webhooks)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing; report how the output would differ from what is there",
    )


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["sink"] = {"local": {"data_dir": args.data_dir}}
    settings = load_settings(args.config, overrides)
    codecs = tuple(args.codec or ())
    inputs = InputOptions(
        paths=tuple(args.inputs),
        capture=args.capture,
        device_id=args.device_id,
        codecs=codecs,
        s3_endpoint_url=args.s3_endpoint_url,
        s3_region=args.s3_region,
    )
    options = replay.ReplayOptions(
        inputs=inputs,
        since=args.since,
        until=args.until,
        devices=tuple(args.device or ()),
        codecs=codecs,
        notifications=args.notifications,
        dry_run=args.dry_run,
    )
    return replay.run(settings, options)
