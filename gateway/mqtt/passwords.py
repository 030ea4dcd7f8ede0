"""Device passwords: a file of salted scrypt hashes, and ``gateway passwd`` which writes it.

One ``user:scrypt$N$r$p$salt$hash`` line per user (salt and hash base64), like the file
``mosquitto_passwd`` keeps. A check costs one scrypt (~50 ms, run off the event loop); a user's
first success is remembered as an HMAC under a per-process key, so a fleet reconnecting after a
restart costs one scrypt per device, not one per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
from pathlib import Path

from gateway.settings_base import ConfigError

EXIT_USAGE = 2
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES = 16
HASH_BYTES = 32


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of ``password`` with a fresh (or the given) salt."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password.encode(), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    """Whether ``password`` matches ``stored``; constant-time comparison. Slow (scrypt)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest, validate=True)
        computed = _scrypt(password.encode(), base64.b64decode(salt, validate=True),
                           int(n), int(r), int(p))  # fmt: skip
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(computed, expected)


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM,
                          dklen=HASH_BYTES)  # fmt: skip


def read_password_file(path: Path) -> dict[str, str]:
    """User → stored hash; ConfigError names the file and line (never a hash or password)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"password_file {path}: cannot read: {exc}"]) from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not user or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ConfigError([f"password_file {path}:{number}: not a `user:scrypt$...` line"])
        users[user] = stored
    return users


class PasswordChecker:
    """Checks CONNECT credentials against one password file's entries."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users
        self._key = secrets.token_bytes(32)
        self._known: dict[str, bytes] = {}  # user -> HMAC of the password that last verified

    @classmethod
    def load(cls, path: Path) -> PasswordChecker:
        return cls(read_password_file(path))

    def _mac(self, password: bytes) -> bytes:
        return hmac.digest(self._key, password, "sha256")

    def remembered(self, user: str, password: bytes) -> bool | None:
        """The answer without scrypt, when there is one: unknown user, or a user seen before."""
        if user not in self._users:
            return False
        known = self._known.get(user)
        return None if known is None else hmac.compare_digest(known, self._mac(password))

    async def check(self, user: str, password: bytes) -> bool:
        answer = self.remembered(user, password)
        if answer is not None:
            return answer
        stored = self._users[user]
        try:
            text = password.decode()
        except UnicodeDecodeError:
            return False
        loop = asyncio.get_running_loop()
        # hashlib's scrypt releases the GIL: a thread keeps the loop serving other devices.
        ok = await loop.run_in_executor(None, verify_password, stored, text)
        if ok:
            self._known[user] = self._mac(password)
        return ok


def write_password(path: Path, user: str, password: str | None) -> None:
    """Set (or with ``None`` delete) ``user``'s entry; the file is replaced atomically, 0600."""
    users = read_password_file(path) if path.exists() else {}
    if password is None:
        if users.pop(user, None) is None:
            raise ConfigError([f"{path}: no user {user!r}"])
    else:
        users[user] = hash_password(password)
    text = "".join(f"{name}:{stored}\n" for name, stored in users.items())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``passwd`` arguments (the command itself is registered by ``gateway.cli``)."""
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
