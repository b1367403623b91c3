"""Reads a crest lake's creator_performance with engines that are not crest.

The Python `deltalake` package (delta-rs's own reader) and `polars` each read
{lake}/creator_performance as a Delta table and print their totals as JSON:
rows, impressions, clicks, spend (exact decimal, as text) and, per date, rows.

    python delta_totals.py LAKE [VERSION]
"""

import json
import sys
from decimal import Decimal

import polars as pl
import pyarrow.compute as pc
from deltalake import DeltaTable


def main() -> None:
    path = sys.argv[1] + "/creator_performance"
    version = int(sys.argv[2]) if len(sys.argv) > 2 else None

    dt = DeltaTable(path, version=version)
    table = dt.to_pyarrow_table()
    by_date = {}
    for d in table.column("date").to_pylist():
        by_date[str(d)] = by_date.get(str(d), 0) + 1
    spend = sum((v for v in table.column("spend").to_pylist() if v is not None), Decimal(0))
    deltalake_totals = {
        "version": dt.version(),
        "rows": table.num_rows,
        "impressions": pc.sum(table.column("impressions")).as_py() or 0,
        "clicks": pc.sum(table.column("clicks")).as_py() or 0,
        "spend": str(spend),
        "by_date": by_date,
    }

    frame = pl.read_delta(path, version=version)
    polars_spend = frame.select(pl.col("spend").sum()).item()
    polars_totals = {
        "rows": frame.height,
        "impressions": frame.select(pl.col("impressions").sum()).item() or 0,
        "clicks": frame.select(pl.col("clicks").sum()).item() or 0,
        "spend": str(polars_spend if polars_spend is not None else Decimal(0)),
        "by_date": {
            str(d): n
            for d, n in frame.group_by("date").agg(pl.len()).iter_rows()
        },
    }
    print(json.dumps({"deltalake": deltalake_totals, "polars": polars_totals}))


if __name__ == "__main__":
    main()
