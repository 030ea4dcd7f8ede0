"""The lake from and to S3 (moto_server on loopback): the same Parquet bytes as from a local
data directory, with Firehose-style gzip objects as input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from gateway.lake.store import Location, S3Options
from gateway.lake.tables import STREAMS
from tests import s3server
from tests.lake.lakes import FIRST_DAY, lake, partition_file
from tests.s3server import MotoS3, isolate_aws

moto = s3server.moto  # one moto_server for this module
BUCKET = "ev-lake"


@pytest.fixture
def data(fleet_days: Path) -> Path:
    return fleet_days


@pytest.fixture
def aws(moto: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoS3:
    isolate_aws(monkeypatch, tmp_path)
    return moto


def deliver(moto: MotoS3, data: Path, prefix: str) -> None:
    """Each local file as Firehose would deliver it: gzip, under YYYY/MM/DD/HH/, no extension."""
    for stream in STREAMS:
        for number, path in enumerate(sorted((data / stream).iterdir())):
            key = f"{prefix}/{stream}/2026/05/29/00/ev-{stream}-1-2026-05-29-00-00-00-{number:04d}"
            moto.put_object(BUCKET, key, gzip.compress(path.read_bytes()))


def test_s3_in_and_out_gives_the_bytes_a_data_directory_gives(
    aws: MotoS3, data: Path, tmp_path: Path
) -> None:
    aws.create_bucket(BUCKET)
    deliver(aws, data, "firehose")
    s3 = ("--s3-endpoint-url", aws.endpoint)
    local = tmp_path / "lake"
    assert lake("compact", "--input", str(data), "--output", str(local), "--date", FIRST_DAY) == 0
    assert lake("daily", "--lake", str(local), "--date", FIRST_DAY) == 0
    remote = f"s3://{BUCKET}/lake"
    assert (
        lake(
            "compact",
            "--input",
            f"s3://{BUCKET}/firehose",
            "--output",
            remote,
            "--date",
            FIRST_DAY,
            *s3,
        )
        == 0
    )
    assert lake("daily", "--lake", remote, "--date", FIRST_DAY, *s3) == 0
    # Objects the job wrote are private to its (dummy) account: read them signed.
    written = [partition_file(Path(), t, FIRST_DAY).as_posix() for t in (*STREAMS, "daily")]
    got = Location(remote, S3Options(aws.endpoint)).fetch(written, tmp_path / "got")
    for path in written:
        assert (got / path).read_bytes() == (local / path).read_bytes(), path


def test_a_missing_bucket_is_one_line_and_exit_74(
    aws: MotoS3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = lake(
        "compact",
        "--input",
        "s3://no-such-bucket/x",
        "--output",
        str(tmp_path),
        "--date",
        FIRST_DAY,
        "--s3-endpoint-url",
        aws.endpoint,
    )
    err = capsys.readouterr().err
    assert status == 74
    assert err.count("\n") == 1 and "NoSuchBucket" in err, err
