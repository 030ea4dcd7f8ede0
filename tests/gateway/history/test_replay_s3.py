"""``gateway replay s3://bucket/prefix``: Firehose-style objects from S3 (moto_server on loopback)
give the same output as the same objects on disk, which is the live output."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest

from gateway.cli import main as cli
from gateway.history import replay_inputs
from tests import s3server
from tests.gateway.gatewayproc import read_records
from tests.gateway.history.replays import by_device, replay
from tests.s3server import MotoS3, isolate_aws

moto = s3server.moto  # one moto_server for this module

PREFIX = "firehose/2026/11/26/"  # Firehose's default YYYY/MM/DD/HH/ layout
FIRST = PREFIX + "13/ev-raw-1-2026-11-26-13-00-00-0b1c.gz"
SECOND = PREFIX + "13/ev-raw-1-2026-11-26-13-05-00-7f3a"


@pytest.fixture
def aws(moto: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoS3:
    """Environment for `gateway replay` (a subprocess inherits it): moto's endpoint, dummy
    credentials, us-east-1, and nothing from the user's own AWS setup."""
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint)
    return moto


@pytest.fixture
def bucket(aws: MotoS3) -> str:
    name = f"replay-{uuid.uuid4().hex[:12]}"
    aws.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def raw_lines(live: Path) -> list[bytes]:
    """The live run's raw records as JSON lines, in the order the local sink wrote them."""
    return [
        line
        for p in sorted((live / "raw").glob("*.jsonl"))
        for line in p.read_bytes().splitlines(True)
    ]


def firehose_objects(lines: list[bytes]) -> dict[str, bytes]:
    """The lines as two Firehose-style objects, one gzip and one plain; two junk objects just
    outside the prefix (the next day; a key matching it but for its final '/'); a folder marker."""
    half = len(lines) // 2
    return {
        FIRST: gzip.compress(b"".join(lines[:half])),
        SECOND: b"".join(lines[half:]),
        "firehose/2026/11/27/00/ev-raw-1-2026-11-27-00-00-00-9d2e": b"{not a raw record\n",
        PREFIX.rstrip("/") + ".txt": b"not even JSON\n",
        PREFIX: b"",  # a console "folder" marker under the prefix: no data, not an input
    }


def test_s3_objects_replay_like_the_same_files_on_disk(
    live: Path, raw_lines: list[bytes], aws: MotoS3, bucket: str, tmp_path: Path
) -> None:
    objects = firehose_objects(raw_lines)
    for key, body in objects.items():
        aws.put_object(bucket, key, body)
        if key.startswith(PREFIX) and body:
            (tmp_path / "disk" / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "disk" / key).write_bytes(body)
    from_s3, err = replay(f"s3://{bucket}/{PREFIX}", "--data-dir", str(tmp_path / "s3"))
    from_disk, _ = replay(str(tmp_path / "disk"), "--data-dir", str(tmp_path / "local"))
    assert err == ""
    live_parsed = read_records(live, "parsed")
    replayed = read_records(tmp_path / "s3", "parsed")
    assert sorted(replayed, key=lambda r: r["id"]) == sorted(live_parsed, key=lambda r: r["id"])
    assert by_device(replayed) == by_device(live_parsed)  # objects in key order, lines in order
    assert replayed == read_records(tmp_path / "local", "parsed")
    counts = ("files", "lines", "raw_records", "parsed_records", "not_decoded", "skipped")
    assert {k: from_s3[k] for k in counts} == {k: from_disk[k] for k in counts}
    assert from_s3["files"] == 2 and from_s3["skipped"] == {}


def test_listing_follows_continuation_tokens(
    live: Path,
    raw_lines: list[bytes],
    bucket: str,
    aws: MotoS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In process, to shrink the page: one key per ListObjectsV2 call.
    monkeypatch.setattr(replay_inputs, "LIST_PAGE_KEYS", 1)
    for key, body in firehose_objects(raw_lines).items():
        aws.put_object(bucket, key, body)
    args = [f"s3://{bucket}/{PREFIX}", "--data-dir", str(tmp_path / "out")]
    assert cli.main(["replay", *args]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["files"] == 2 and summary["skipped"] == {}
    assert "continuation-token" in aws.output()
    replayed = read_records(tmp_path / "out", "parsed")
    assert sorted(replayed, key=lambda r: r["id"]) == sorted(
        read_records(live, "parsed"), key=lambda r: r["id"]
    )


def test_bad_lines_in_objects_are_reported_with_key_and_line(
    raw_lines: list[bytes],
    aws: MotoS3,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corrupt, cut = PREFIX + "14/corrupt.gz", PREFIX + "14/cut"
    aws.put_object(bucket, corrupt, gzip.compress(raw_lines[0] + b"{not json\n" + raw_lines[1]))
    aws.put_object(bucket, cut, gzip.compress(b"".join(raw_lines[2:40]))[:-30])
    # The flags win over the environment (this endpoint refuses connections).
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    flags = ["--s3-endpoint-url", aws.endpoint, "--s3-region", "us-east-1"]
    summary, err = replay(f"s3://{bucket}/{PREFIX}", *flags, "--data-dir", str(tmp_path / "out"))
    assert f"gateway replay: s3://{bucket}/{corrupt}:2: not a raw record" in err
    assert f"s3://{bucket}/{cut}:" in err and "damaged gzip data" in err
    assert summary["skipped"] == {"corrupt_line": 1, "truncated_gzip": 1}
    assert summary["files"] == 2 and summary["raw_records"] >= 3  # the good lines were replayed


def test_a_missing_bucket_is_one_line_and_the_rest_is_replayed(
    live: Path, aws: MotoS3, bucket: str, tmp_path: Path
) -> None:
    missing = f"s3://no-such-{uuid.uuid4().hex[:12]}/{PREFIX}"
    empty = f"s3://{bucket}/nothing/here/"
    summary, err = replay(missing, empty, str(live / "raw"), "--data-dir", str(tmp_path / "out"))
    assert err.splitlines() == [
        f"gateway replay: {missing}: no such bucket; skipped",
        f"gateway replay: {empty}: no objects under this prefix; skipped",
    ]
    assert summary["skipped"] == {"missing_input": 2}
    assert summary["parsed_records"] == len(read_records(live, "parsed"))


def test_no_credentials_is_one_line(
    aws: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    summary, err = replay(f"s3://{bucket}/{PREFIX}", "--data-dir", str(tmp_path / "out"))
    assert err.splitlines() == [
        f"gateway replay: s3://{bucket}/{PREFIX}: cannot read: no AWS credentials "
        "(environment, profile or instance role); skipped"
    ]
    assert summary["skipped"] == {"unreadable": 1}
