"""The Glue/Athena tables over the lake, and the same tables as DuckDB views on a local copy.

``create_tables`` gives one ``CREATE EXTERNAL TABLE`` per table with partition projection on
``dt`` (no crawler, no ``MSCK REPAIR``: Athena computes the day folders). ``local_views`` makes
views of the same names and columns (``dt`` a string partition, as in Glue) over a local lake
directory, so a query written for Athena runs unchanged on one machine.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from gateway.lake import daily
from gateway.lake.compact import run, sql_text
from gateway.lake.tables import DAILY, TABLES

PROJECTION_START = "2024-01-01"


def _layouts() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Table name -> (folder under the lake's root, [(column, Glue type)])."""
    layouts = {
        name: (table.prefix, [(c.name, c.glue) for c in table.columns])
        for name, table in TABLES.items()
    }
    layouts[DAILY] = (DAILY, list(daily.COLUMNS))
    return layouts


def create_tables(location: str, database: str) -> str:
    """The statements for a lake at ``location`` (``s3://bucket/prefix``), ``;``-terminated."""
    root = location.rstrip("/")
    statements = []
    for name, (folder, columns) in _layouts().items():
        body = ",\n".join(f"  `{column}` {glue}" for column, glue in columns)
        where = f"{root}/{folder}"
        statements.append(
            f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{name}` (\n{body}\n)\n"
            "PARTITIONED BY (`dt` string)\n"
            "STORED AS PARQUET\n"
            f"LOCATION '{where}/'\n"
            "TBLPROPERTIES (\n"
            "  'parquet.compression' = 'ZSTD',\n"
            "  'projection.enabled' = 'true',\n"
            "  'projection.dt.type' = 'date',\n"
            "  'projection.dt.format' = 'yyyy-MM-dd',\n"
            f"  'projection.dt.range' = '{PROJECTION_START},NOW',\n"
            "  'projection.dt.interval' = '1',\n"
            "  'projection.dt.interval.unit' = 'DAYS',\n"
            f"  'storage.location.template' = '{where}/dt=${{dt}}/'\n"
            ");"
        )
    return "\n\n".join(statements) + "\n"


def local_views(con: duckdb.DuckDBPyConnection, root: Path) -> list[str]:
    """Views named as the Glue tables over the Parquet files under ``root``; the names of
    those that have files."""
    made = []
    for name, (folder, columns) in _layouts().items():
        if not any((root / folder).glob("dt=*/*.parquet")):
            continue
        pattern = sql_text(str(root / folder / "dt=*" / "*.parquet"))
        names = ", ".join(f'"{column}"' for column, _ in columns)
        run(
            con,
            f'CREATE OR REPLACE VIEW "{name}" AS SELECT {names}, dt FROM read_parquet('
            f"{pattern}, hive_partitioning = true, hive_types = {{'dt': VARCHAR}})",
        )
        made.append(name)
    return made
