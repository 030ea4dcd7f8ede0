"""Where the lake's inputs and outputs live: a local directory or ``s3://bucket/prefix``.

DuckDB reads and writes local files only here (its S3 extension would download itself at run
time), so S3 objects are fetched into a work directory and results uploaded from it, through
aiobotocore as ``gateway replay`` reads S3. A result replaces its predecessor atomically: a
local file is written beside it and renamed over it (then the directory is fsynced), an S3
object is replaced by one PutObject — a reader sees the old day or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import aiobotocore.session
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from gateway.common.disk import fsync_dir

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

S3_SCHEME = "s3://"
LIST_PAGE_KEYS = 1000
DOWNLOAD_CHUNK_BYTES = 1 << 20
# A date in a file or object name: the local sink's 20260529T..., Firehose's 2026/05/29/ and
# 2026-05-29-... (the first one in the name is the one it was started or delivered on).
_NAME_DATE = re.compile(r"(20\d\d)[-/]?([01]\d)[-/]?([0-3]\d)")

T = TypeVar("T")


class LakeError(Exception):
    """Input or output that cannot be read or written; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None


def relevant(name: str, day: date, late_days: int | None) -> bool:
    """Whether a file may hold records of ``day``: one whose name dates it from the day before
    (a file opened before midnight) on — a late backlog, or a replay of old raw records, lands
    in files named when it was written — or up to ``late_days`` after the day when given; one
    whose name has no date may hold anything."""
    match = _NAME_DATE.search(name)
    if match is None:
        return True
    try:
        named = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return True
    if named < day - timedelta(days=1):
        return False
    return late_days is None or named <= day + timedelta(days=late_days)


class Location:
    """A local directory or an S3 prefix; paths inside it are ``/``-separated."""

    def __init__(self, url: str, s3: S3Options) -> None:
        self.url = url
        self.s3 = s3
        self.is_s3 = url.startswith(S3_SCHEME)
        if self.is_s3:
            bucket, _, prefix = url.removeprefix(S3_SCHEME).partition("/")
            if not bucket:
                raise LakeError(f"{url}: an S3 location needs a bucket: {S3_SCHEME}BUCKET/PREFIX")
            self.bucket = bucket
            self.prefix = prefix.strip("/")
        else:
            self.root = Path(url)

    def __str__(self) -> str:
        return self.url

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def list_files(self, folder: str) -> list[str]:
        """Every file under ``folder``, as paths relative to the location, sorted."""
        if not self.is_s3:
            base = self.root / folder
            if not base.is_dir():
                return []
            found = (p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))
            return sorted(p.relative_to(self.root).as_posix() for p in found)
        return self._s3(lambda client: self._list(client, self._key(folder) + "/"))

    async def _list(self, client: S3Client, prefix: str) -> list[str]:
        keys: list[str] = []
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_KEYS}
        )
        async for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                if not key.endswith("/"):  # a console "folder" marker holds no data
                    keys.append(key[len(self.prefix) + 1 :] if self.prefix else key)
        return sorted(keys)

    def fetch(self, paths: list[str], work: Path) -> Path:
        """The files at ``paths`` on the local disk: in place for a local location, else
        downloaded under ``work`` with the same relative paths; the folder they are under."""
        if not self.is_s3:
            return self.root
        self._s3(lambda client: self._download(client, paths, work))
        return work

    async def _download(self, client: S3Client, paths: list[str], work: Path) -> None:
        for path in paths:
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            response = await client.get_object(Bucket=self.bucket, Key=self._key(path))
            with target.open("wb") as f:
                async with response["Body"] as body:
                    async for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                        f.write(chunk)

    def exists(self, path: str) -> bool:
        if not self.is_s3:
            return (self.root / path).is_file()
        return bool(self._s3(lambda client: self._list(client, self._key(path))))

    def publish(self, source: Path, path: str) -> None:
        """Put the local file ``source`` at ``path``, replacing what was there atomically;
        ``source`` is consumed."""
        if self.is_s3:
            self._s3(lambda client: self._upload(client, source, path))
            source.unlink()
            return
        target = self.root / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with source.open("rb") as src, staged.open("wb") as dst:
                while chunk := src.read(DOWNLOAD_CHUNK_BYTES):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(staged, target)
            fsync_dir(target.parent)
        except OSError as exc:
            raise LakeError(f"{target}: {exc.strerror or exc}") from None
        source.unlink()

    async def _upload(self, client: S3Client, source: Path, path: str) -> None:
        # Streamed from the file: a big fleet's day is gigabytes. One PutObject takes up to
        # 5 GiB (about 300 M parsed records at this compression).
        with source.open("rb") as body:
            await client.put_object(Bucket=self.bucket, Key=self._key(path), Body=body)

    def _s3(self, call: Callable[[S3Client], Awaitable[T]]) -> T:
        async def main() -> T:
            session = aiobotocore.session.get_session()
            # Unset options leave endpoint and region to botocore (AWS_ENDPOINT_URL_S3,
            # AWS_DEFAULT_REGION, the config file); credentials come from the standard chain.
            config = AioConfig(retries={"mode": "standard"}, connect_timeout=5, read_timeout=60)
            async with session.create_client(
                "s3", region_name=self.s3.region, endpoint_url=self.s3.endpoint_url, config=config
            ) as client:
                return await call(client)

        try:
            return asyncio.run(main())
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise LakeError(
                f"{self.url}: {error.get('Code', '')}: {error.get('Message', '')}"
            ) from None
        except (BotoCoreError, ValueError) as exc:
            raise LakeError(f"{self.url}: {exc}") from None
