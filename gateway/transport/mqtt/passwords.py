"""Device passwords: a file of salted scrypt hashes, which ``gateway passwd`` writes.

One ``user:scrypt$N$r$p$salt$hash`` line per user (salt and hash base64), like the file
``mosquitto_passwd`` keeps. A check costs one scrypt (~50 ms, run off the event loop on a few
threads of its own); a user's success is remembered as an HMAC under a per-process key, so a
fleet reconnecting after a restart costs one scrypt per device, not one per connection.

Every other answer costs a scrypt too, unknown users included (against a hash no password
matches): an instant "no" would tell an attacker which user names exist. So that guessing cannot
queue unbounded work, at most ``max_pending`` checks wait or run at once; beyond that the caller
refuses the connection as busy.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from gateway.common.settings_base import ConfigError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES = 16
HASH_BYTES = 32
# scrypt holds 128 * r * N = 16 MiB a check: two at a time keep one core for the event loop.
SCRYPT_THREADS = 2
# Checked against for a user not in the file: the same parameters as every stored hash (so the
# same cost), a digest no password yields.
_NO_USER = (
    f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$"
    f"{base64.b64encode(bytes(SALT_BYTES)).decode()}${base64.b64encode(bytes(HASH_BYTES)).decode()}"
)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The stored form of ``password`` with a fresh (or the given) salt."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password.encode(), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str | bytes) -> bool:
    """Whether ``password`` matches ``stored``; constant-time comparison. Slow (scrypt)."""
    secret = password.encode() if isinstance(password, str) else password
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest, validate=True)
        computed = _scrypt(secret, base64.b64decode(salt, validate=True),
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
    """Checks CONNECT credentials against one password file's entries, ``max_pending`` checks
    at most waiting or running at once (see :attr:`full`)."""

    def __init__(self, users: dict[str, str], max_pending: int = 64) -> None:
        self._users = users
        self._key = secrets.token_bytes(32)
        self._known: dict[str, bytes] = {}  # user -> HMAC of the password that last verified
        self.max_pending = max_pending
        self.pending = 0  # checks submitted and not finished

    @classmethod
    def load(cls, path: Path, max_pending: int = 64) -> PasswordChecker:
        return cls(read_password_file(path), max_pending)

    @property
    def full(self) -> bool:
        """No check can be queued now: refuse the connection (busy) rather than wait."""
        return self.pending >= self.max_pending

    def _mac(self, password: bytes) -> bytes:
        return hmac.digest(self._key, password, "sha256")

    def remembered(self, user: str, password: bytes) -> bool:
        """Whether ``password`` is the one that last verified for ``user`` (no scrypt). A miss
        says nothing: only :meth:`check` can say no, in the same time for every user."""
        known = self._known.get(user)
        return known is not None and hmac.compare_digest(known, self._mac(password))

    def check(self, user: str, password: bytes) -> asyncio.Future[bool]:
        """Whether ``password`` is ``user``'s, once known; counted in :attr:`pending` from now
        (not from when the task first runs: CONNECTs in the same read see each other)."""
        self.pending += 1
        return asyncio.ensure_future(self._check(user, password))

    async def _check(self, user: str, password: bytes) -> bool:
        stored = self._users.get(user, _NO_USER)
        try:
            if self.remembered(user, password):
                return True
            # hashlib's scrypt releases the GIL: the threads keep the loop serving devices.
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(_scrypt_threads(), verify_password, stored, password)
        finally:
            self.pending -= 1
        ok = ok and user in self._users
        if ok:
            self._known[user] = self._mac(password)
        return ok


@functools.cache
def _scrypt_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The process's scrypt threads (shared by every listener, kept across reloads)."""
    return concurrent.futures.ThreadPoolExecutor(SCRYPT_THREADS, "scrypt")


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
