#!/usr/bin/env python
"""Clip-level prediction tables (CSV) from `xmodal label` output, or from a folder directly.

    python tools/export_predictions.py predictions.jsonl --out clips.csv --summary videos.csv
    python tools/export_predictions.py videos/ --model runs/demo --window 4 --stride 2 --out clips.csv

clips.csv:  path,start_s,end_s,label,score            (one row per window / clip)
videos.csv: path,label,score,kind,duration_s,num_clips,majority_clip_label,error
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from xmodal.errors import XmodalError
from xmodal.names import display


@click.command()
@click.argument("source", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Clip-level CSV to write.")
@click.option("--summary", type=click.Path(), help="Also write a per-video summary CSV.")
@click.option("--model", "models", multiple=True, help="Label a folder first with these models.")
@click.option("--window", type=float, default=None, help="Window length (s) when labelling a folder.")
@click.option("--stride", type=float, default=None, help="Window stride (s) when labelling a folder.")
def export(source: str, out: str, summary: str | None, models: tuple[str, ...],
           window: float | None, stride: float | None) -> None:
    from xmodal.engine.export import (
        CLIP_COLUMNS,
        SUMMARY_COLUMNS,
        clip_rows,
        read_records,
        summary_rows,
        write_table,
    )

    if Path(source).is_dir():
        source = _label_folder(source, models, window, stride)
    records = list(read_records(source))
    n = write_table(out, CLIP_COLUMNS, clip_rows(records))
    click.echo(display(f"wrote {n} clip rows to {out}"))
    if summary:
        m = write_table(summary, SUMMARY_COLUMNS, summary_rows(records))
        click.echo(display(f"wrote {m} file rows to {summary}"))


def _label_folder(folder: str, models: tuple[str, ...], window: float | None,
                  stride: float | None) -> str:
    from xmodal.engine.label import find_files, label_files
    from xmodal.engine.predict import Predictor, load_model
    from xmodal.names import unsupported_message

    if not models:
        raise click.UsageError("labelling a folder needs --model")
    out = Path(tempfile.mkdtemp(prefix="xmodal-export-")) / "predictions.jsonl"
    predictor = Predictor([load_model(m) for m in models], window_s=window, stride_s=stride,
                          workers=2)
    scan = find_files([folder])
    if scan.unsupported:
        click.echo(f"export_predictions: {display(unsupported_message(scan.unsupported))}", err=True)
    label_files(predictor, scan.files, out)
    return str(out)


def main() -> None:
    try:
        export.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except XmodalError as exc:
        click.echo(f"export_predictions: error: {display(str(exc))}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
