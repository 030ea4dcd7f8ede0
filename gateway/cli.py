"""The ``gateway`` console script: every mode is a subcommand.

User errors (bad hex, unknown codec, unreadable file) print one line on stderr and exit 2; a
traceback is never a user's answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import decode, kinesis_tail, logs, parse, replay, schema, server, workers
from gateway.bridge.settings import unknown_codecs
from gateway.fleet import command as simulate_command
from gateway.mqtt import passwords
from gateway.mqtt.settings import LISTEN_PREFIX, json_codec_factories, parse_mqtt_listen
from gateway.registry import CodecRegistry, UnknownCodecError, default_layout_dirs
from gateway.settings import ConfigError, load_settings, parse_address, parse_listen
from gateway.sink import SinkError

EXIT_USAGE = 2
EXIT_IO = 74  # sysexits' EX_IOERR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("decode", help="decode device bytes with one codec and print JSON lines")
    p.add_argument("--codec", required=True, help="codec name (see `gateway codecs`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hex", help="the bytes as hex (whitespace allowed)")
    src.add_argument("--file", help="a capture file (binary, or hex text)")
    src.add_argument("stdin", nargs="?", choices=["-"], help="read the bytes from stdin")
    p.add_argument(
        "--format",
        choices=["auto", "hex", "binary"],
        default="auto",
        help="how to read --file/stdin (auto: hex text if it is only hex digits)",
    )
    p.add_argument(
        "--layout-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="extra directory of codec layout files (repeatable)",
    )

    p = sub.add_parser("run", help="run the gateway (listeners, pipeline, sinks, metrics)")
    _service_flags(p, config_required=False)
    p.add_argument(
        "--listen",
        action="append",
        metavar="CODEC=HOST:PORT",
        help="a listener (repeatable; replaces the configured listeners); mqtt=HOST:PORT is an "
        "MQTT listener (plain, no auth, ev/{device_id}/telemetry -> evb1)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes sharing the ports (SO_REUSEPORT); metrics on port + worker index",
    )

    p = sub.add_parser(
        "bridge",
        help="run the MQTT bridge of the [bridge] section (pipeline and sinks, no device ports)",
    )
    _service_flags(p, config_required=True)
    p.set_defaults(listen=None)

    simulate_command.add_parser(sub)
    passwords.add_parser(sub)
    kinesis_tail.add_parser(sub)
    replay.add_parser(sub)
    parse.add_parser(sub)

    p = sub.add_parser("check-config", help="validate a settings file; print every error")
    p.add_argument("file", type=Path)

    p = sub.add_parser("codecs", help="list the available codecs and any that failed to load")
    p.add_argument("--layout-dir", action="append", type=Path, metavar="DIR")

    p = sub.add_parser("schema", help="write or check the JSON Schemas of the records")
    p.add_argument("--write", type=Path, metavar="DIR", help="write the schema files into DIR")
    p.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR's files are stale")
    return parser


def _service_flags(p: argparse.ArgumentParser, *, config_required: bool) -> None:
    """The flags of the long-running modes (``run``, ``bridge``)."""
    p.add_argument(
        "--config", type=Path, required=config_required, metavar="FILE", help="TOML settings file"
    )
    p.add_argument("--data-dir", type=Path, metavar="DIR", help="local sink data directory")
    p.add_argument("--metrics", metavar="HOST:PORT", help="Prometheus endpoint address")
    p.add_argument("--health", metavar="HOST:PORT", help="/healthz and /readyz address")


def bridge_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``gateway bridge``: the ``run`` flags' settings, and no device listeners."""
    return {**run_overrides(args), "listeners": [], "mqtt_listeners": []}


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given by ``gateway run`` flags (they beat the file and the environment)."""
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["sink"] = {"local": {"data_dir": args.data_dir}}
    if args.listen:
        tcp = [spec for spec in args.listen if not spec.startswith(LISTEN_PREFIX)]
        mqtt = [spec for spec in args.listen if spec.startswith(LISTEN_PREFIX)]
        overrides["listeners"] = [parse_listen(spec).model_dump() for spec in tcp]
        overrides["mqtt_listeners"] = [parse_mqtt_listen(spec).model_dump() for spec in mqtt]
    if args.metrics is not None:
        host, port = parse_address(args.metrics, "--metrics")
        overrides["metrics"] = {"host": host, "port": port}
    if args.health is not None:
        host, port = parse_address(args.health, "--health")
        overrides["health"] = {"host": host, "port": port}
    return overrides


def without_workers_flag(argv: Sequence[str] | None) -> list[str]:
    """The ``run`` arguments for one worker: everything but ``--workers N``."""
    args = list(sys.argv[1:] if argv is None else argv)[1:]  # drop the "run" itself
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def check_config(path: Path) -> int:
    """Validate ``path`` like ``gateway run`` would, codec names included."""
    settings = load_settings(path)
    registry = CodecRegistry.load(
        [*default_layout_dirs(), *settings.layout_dirs],
        configured=json_codec_factories(settings.json_codecs),
    )
    problems = [
        f"listeners.{i}.codec: unknown codec {ls.codec!r}; known: {', '.join(registry.names())}"
        for i, ls in enumerate(settings.listeners)
        if ls.codec not in registry.names()
    ]
    problems += [
        f"mqtt_listeners.{i}.routes.{j}.codec: unknown codec {route.codec!r}"
        for i, ms in enumerate(settings.mqtt_listeners)
        for j, route in enumerate(ms.routes)
        if route.codec not in registry.names()
    ]
    if settings.bridge is not None:
        problems += unknown_codecs(settings.bridge, registry.names())
    if problems:
        raise ConfigError(problems)
    print(f"{path}: ok ({len(settings.listeners)} listeners)")
    if settings.bridge is not None:
        b = settings.bridge
        print(
            f"{path}: bridge ok ({len(b.sources)} sources, {len(b.routes)} routes, "
            f"{len(b.destinations)} destinations)"
        )
    return 0


def _registry(extra: list[Path] | None) -> CodecRegistry:
    return CodecRegistry.load([*default_layout_dirs(), *(extra or [])])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "decode":
            codec = _registry(args.layout_dir).create(args.codec)
            data = decode.read_input(args.hex, args.file, sys.stdin.buffer, args.format)
            decode.run(codec, data)
        elif args.command == "codecs":
            registry = _registry(args.layout_dir)
            problems = registry.problems()
            for name in registry.names():
                print(name if name not in problems else f"{name}  (unusable: {problems[name]})")
        elif args.command == "schema":
            return schema.command(args.write, args.check)
        elif args.command == "run":
            settings = load_settings(args.config, run_overrides(args))
            if args.workers > 1:
                shared = [ls for ls in settings.listeners if ls.port == 0]
                if shared:
                    raise ConfigError(
                        ["--workers needs fixed listener ports (port 0 differs per process)"]
                    )
                return workers.supervise(without_workers_flag(argv), args.workers)
            logs.configure(settings.log)
            return server.run(settings, lambda: load_settings(args.config, run_overrides(args)))
        elif args.command == "bridge":
            settings = load_settings(args.config, bridge_overrides(args))
            if settings.bridge is None:
                raise ConfigError([f"{args.config}: no [bridge] section"])
            logs.configure(settings.log)
            return server.run(settings, lambda: load_settings(args.config, bridge_overrides(args)))
        elif args.command == "check-config":
            return check_config(args.file)
        elif args.command == "passwd":
            return passwords.run(args)
        elif args.command == "simulate":
            return simulate_command.run(args)
        elif args.command == "kinesis":
            return kinesis_tail.run(args)
        elif args.command == "replay":
            return replay.run(args)
        elif args.command == "parse":
            return parse.run(args)
    except (UnknownCodecError, decode.InputError) as exc:
        print(f"gateway {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"gateway {args.command}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except SinkError as exc:  # the data directory or the sink cannot be written at all
        print(f"gateway {args.command}: {exc}", file=sys.stderr)
        return EXIT_IO
    except BrokenPipeError:  # `gateway decode ... | head` is fine
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
