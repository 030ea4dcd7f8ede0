"""The ``gateway`` console script: every mode is a subcommand.

User errors (bad hex, unknown codec, unreadable file, a port in use) print one line on stderr and
exit 2; a traceback is never a user's answer. Other statuses follow sysexits(3): 69 nothing
accepted the simulator's connections, 74 the data directory or sink cannot be written, 75 (parse)
try again later.

Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``: argument
parsing there, the work in the engine it calls. A command's module is imported only when that
command runs: aiobotocore, aiohttp and pydantic took 0.6 s to import, which ``gateway --help``,
``decode`` and ``codecs`` never use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gateway.cli.status import EXIT_IO, EXIT_USAGE

# name -> (its module, the line `gateway --help` shows without importing it), in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "decode": (
        "gateway.cli.decode",
        "decode device bytes with one codec and print JSON lines",
    ),
    "run": ("gateway.cli.run", "run the gateway (listeners, pipeline, sinks, metrics)"),
    "bridge": (
        "gateway.cli.bridge",
        "run the MQTT bridge of the [bridge] section (pipeline and sinks, no device ports)",
    ),
    "simulate": (
        "gateway.cli.simulate",
        "run a simulated device fleet against a gateway and print a JSON summary",
    ),
    "passwd": (
        "gateway.cli.passwd",
        "set or delete an MQTT device's password in a password file (like mosquitto_passwd)",
    ),
    "kinesis": ("gateway.cli.kinesis", "Kinesis tools"),
    "replay": (
        "gateway.cli.replay",
        "re-parse raw records (archives, captures) like live ingest",
    ),
    "parse": (
        "gateway.cli.parse",
        "consume the raw Kinesis stream and produce parsed records",
    ),
    "lake": (
        "gateway.cli.lake",
        "compact a day of records into Parquet, aggregate it per vehicle, print the Athena DDL",
    ),
    "journal": (
        "gateway.cli.journal",
        "the journal under the data directory: segments and each target's lag",
    ),
    "check-config": ("gateway.cli.check_config", "validate a settings file; print every error"),
    "codecs": ("gateway.cli.codecs", "list the available codecs and any that failed to load"),
    "schema": ("gateway.cli.schema", "write or check the JSON Schemas of the records"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s arguments are loaded (its module imported)."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_line) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def _user_error(command: str, exc: Exception) -> int | None:
    """Print ``exc`` as the user's mistake and return the exit status; None if it is a bug.

    The error types are imported here, not at the top: whatever raised one has loaded its module
    already, and a command that raised none never pays for pydantic.
    """
    from gateway.common.hex_text import InputError  # noqa: PLC0415
    from gateway.common.settings_base import ConfigError  # noqa: PLC0415
    from gateway.common.sink import SinkError  # noqa: PLC0415
    from gateway.pipeline.registry import UnknownCodecError  # noqa: PLC0415

    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            print(f"gateway {command}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, UnknownCodecError | InputError):
        print(f"gateway {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, SinkError):  # the data directory or the sink cannot be written at all
        print(f"gateway {command}: {exc}", file=sys.stderr)
        return EXIT_IO
    return None


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first word (the top level takes only ``-h``)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # Every command's namespace also holds the words it was parsed from (`run --workers` starts
    # its workers with them).
    args = build_parser(_command_in(words)).parse_args(words, argparse.Namespace(argv=words))
    try:
        status: int = importlib.import_module(COMMANDS[args.command][0]).run(args)
    except BrokenPipeError:  # `gateway decode ... | head` is fine
        return 0
    except Exception as exc:
        user_status = _user_error(args.command, exc)
        if user_status is None:
            raise
        return user_status
    return status


if __name__ == "__main__":
    sys.exit(main())
