"""Input files read by DuckDB's own readers (Parquet: no pyarrow needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from workbench.errors import DataError


def parquet_rows(path: Path, required: list[str]) -> Iterator[tuple[int, dict]]:
    """``(row number, row)`` from a Parquet file, read by DuckDB (no pyarrow needed)."""
    import duckdb

    if not path.exists():
        raise DataError("file not found", file=str(path))
    con = duckdb.connect()
    try:
        cur = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
    except duckdb.Error as exc:
        raise DataError(f"not a readable Parquet file ({str(exc).splitlines()[0]})", file=str(path)) from exc
    header = [d[0] for d in cur.description]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; the file has {', '.join(header)}",
            file=str(path),
            field=missing[0],
            fix="Rename the column or map it with the column options.",
        )
    n = 0
    while batch := cur.fetchmany(4096):
        for row in batch:
            n += 1
            yield n, dict(zip(header, row))
    con.close()


def write_parquet(rows: list[dict], columns: dict[str, str], path: Path) -> None:
    """Write ``rows`` to ``path`` as Parquet with DuckDB (no pyarrow needed): ``columns`` maps each column to
    its SQL type, in order; missing values are NULL. Written to a temporary file, then renamed."""
    import duckdb

    tmp = path.with_name(f".{path.name}.tmp")
    con = duckdb.connect()
    try:
        ddl = ", ".join(f'"{c}" {t}' for c, t in columns.items())
        con.execute(f"CREATE TABLE m ({ddl})")
        if rows:
            marks = ", ".join("?" for _ in columns)
            con.executemany(f"INSERT INTO m VALUES ({marks})", [[r.get(c) for c in columns] for r in rows])
        con.execute(f"COPY m TO '{_quote(tmp)}' (FORMAT parquet)")
    finally:
        con.close()
    tmp.replace(path)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
