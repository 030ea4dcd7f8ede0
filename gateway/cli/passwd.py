"""``gateway passwd``: set or delete an MQTT device's password in a password file (like
``mosquitto_passwd``; the file's format is :mod:`gateway.transport.mqtt.passwords`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from gateway.cli.status import EXIT_USAGE
from gateway.transport.mqtt.passwords import write_password


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="the password file (created if missing)")
    p.add_argument("user", help="user name (the MQTT CONNECT username)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("-b", dest="password", metavar="PASSWORD",
                     help="take the password from the command line (visible in `ps`)")  # fmt: skip
    how.add_argument("-D", dest="delete", action="store_true", help="delete the user")


def run(args: argparse.Namespace) -> int:
    if ":" in args.user or not args.user or args.user != args.user.strip():
        print("gateway passwd: the user name must be non-empty, without ':'", file=sys.stderr)
        return EXIT_USAGE
    password = None
    if not args.delete:
        password = args.password
        if password is None:
            try:
                password = getpass.getpass("Password: ")
                again = getpass.getpass("Reenter password: ")
            except (EOFError, KeyboardInterrupt):
                print("\ngateway passwd: no password given", file=sys.stderr)
                return EXIT_USAGE
            if password != again:
                print("gateway passwd: the passwords do not match", file=sys.stderr)
                return EXIT_USAGE
        if not password:
            print("gateway passwd: the password must not be empty", file=sys.stderr)
            return EXIT_USAGE
    try:
        write_password(args.file, args.user, password)
    except OSError as exc:
        print(f"gateway passwd: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0
