"""``gateway lake``: the records as a data lake — one Parquet file per stream per day, and
daily per-vehicle aggregates — laid out and typed exactly as the Glue tables over S3 read them.

``tables`` holds the layout (columns, partitions) that compaction writes and the DDL declares;
``store`` moves files between a data directory or S3 and the local disk the engine (DuckDB)
reads and writes; ``compact``, ``daily`` and ``ddl`` hold the SQL of each job and ``jobs`` runs
them (``gateway.cli.lake`` is their command line).
"""
