"""``gateway kinesis``: Kinesis tools; ``tail`` prints a stream's records
(:mod:`gateway.history.kinesis_tail`)."""

from __future__ import annotations

import argparse

from gateway.history.kinesis_tail import TailOptions, tail


def add_arguments(p: argparse.ArgumentParser) -> None:
    tools = p.add_subparsers(dest="kinesis_command", required=True, metavar="TOOL")
    t = tools.add_parser("tail", help="print a stream's records (deaggregated) as JSON lines")
    t.add_argument("--stream", required=True, help="stream name")
    t.add_argument("--from-start", action="store_true", help="read from the oldest record")
    t.add_argument("--region", help="AWS region (default: the AWS configuration chain)")
    t.add_argument("--endpoint-url", help="endpoint (default: AWS_ENDPOINT_URL_KINESIS or AWS)")
    t.add_argument("--idle-exit", type=float, metavar="S", help="stop after S s without records")
    t.add_argument("--limit", type=int, metavar="N", help="stop after N user records")


def run(args: argparse.Namespace) -> int:
    options = TailOptions(
        stream=args.stream,
        from_start=args.from_start,
        region=args.region,
        endpoint_url=args.endpoint_url,
        idle_exit_s=args.idle_exit,
        limit=args.limit,
    )
    return tail(options)
