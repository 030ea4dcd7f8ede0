"""The lake's SQL side, through the real ``gateway`` process: the Glue/Athena DDL declares the
columns the files have, and the README's queries run on a local lake as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from gateway.lake.daily import COLUMNS as DAILY_COLUMNS
from gateway.lake.tables import TABLES
from tests.lake.lakes import FIRST_DAY, partition_file

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = str(Path(sys.executable).with_name("gateway"))
# DuckDB's name for each Glue type the lake uses (Parquet carries the DuckDB type back).
GLUE_OF_DUCKDB = {
    "VARCHAR": "string",
    "TIMESTAMP": "timestamp",
    "DOUBLE": "double",
    "BIGINT": "bigint",
    "INTEGER": "int",
    "BOOLEAN": "boolean",
    "BLOB": "binary",
    "DOUBLE[]": "array<double>",
    "MAP(VARCHAR, VARCHAR)": "map<string,string>",
}


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY, "lake", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def local_lake(fleet_days: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("sql")
    out = str(base / "lake")
    compact = gateway("compact", "--input", str(fleet_days), "--output", out, "--date", FIRST_DAY)
    assert compact.returncode == 0, compact.stderr
    # Piped: the summary is one JSON line.
    assert json.loads(compact.stdout)["streams"]["parsed"]["records"] > 0
    daily = gateway("daily", "--lake", out, "--date", FIRST_DAY)
    assert daily.returncode == 0, daily.stderr
    assert json.loads(daily.stdout)["vehicles"] == 2
    yield base / "lake"


def declared() -> dict[str, list[tuple[str, str]]]:
    ddl = gateway("ddl", "--location", "s3://bucket/lake", "--database", "ev")
    assert ddl.returncode == 0, ddl.stderr
    tables = {}
    for name, body in re.findall(
        r"CREATE EXTERNAL TABLE IF NOT EXISTS `ev`\.`(\w+)` \((.*?)\n\)", ddl.stdout, re.DOTALL
    ):
        tables[name] = re.findall(r"^  `(\w+)` (\S+?),?$", body, re.MULTILINE)
    assert "'storage.location.template' = 's3://bucket/lake/stream=parsed/dt=${dt}/'" in ddl.stdout
    return tables


def test_the_ddl_declares_the_columns_and_types_the_files_have(local_lake: Path) -> None:
    tables = declared()
    assert sorted(tables) == sorted([*TABLES, "daily"])
    with duckdb.connect() as con:
        for name, columns in tables.items():
            path = partition_file(local_lake, name, FIRST_DAY)
            described = con.execute(
                "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)", [str(path)]
            ).fetchall()
            assert [c for c, _ in columns] == [row[0] for row in described], name
            for (column, glue), row in zip(columns, described, strict=True):
                duck = str(row[1])
                if duck in GLUE_OF_DUCKDB:
                    assert GLUE_OF_DUCKDB[duck] == glue, (name, column)
                else:  # lists of structs: alarms, the daily counts
                    assert glue.startswith("array<struct<") and duck.startswith("STRUCT("), column
    assert tables["daily"] == list(DAILY_COLUMNS)


def readme_queries() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The data lake: `gateway lake`", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


def test_the_readme_queries_run_on_a_local_lake(local_lake: Path) -> None:
    queries = readme_queries()
    assert len(queries) >= 2
    for sql in queries:
        result = gateway("query", "--lake", str(local_lake), sql)
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert rows, sql


def test_bad_input_is_one_line_and_an_exit_status(tmp_path: Path) -> None:
    daily = gateway("daily", "--lake", str(tmp_path), "--date", FIRST_DAY)
    assert daily.returncode == 74
    assert daily.stderr.count("\n") == 1 and "run `gateway lake compact`" in daily.stderr
    for bad in (("ddl", "--location", "/tmp/x"), ("daily", "--lake", "x", "--date", "May 29")):
        result = gateway(*bad)
        assert result.returncode == 2 and "Traceback" not in result.stderr, bad
    # A mistyped input replaces nothing with empty files.
    typo = gateway("compact", "--input", str(tmp_path / "dat"), "--output", str(tmp_path))
    assert typo.returncode == 74 and "no files under parsed/, raw/" in typo.stderr
    assert not list(tmp_path.iterdir())
    sql = gateway("query", "--lake", str(tmp_path), "SELECT 1")
    assert sql.returncode == 74 and sql.stderr.count("\n") == 1
