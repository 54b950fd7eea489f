#!/usr/bin/env python
"""Clip-level prediction tables (CSV) from `xmodal label` output, or from a folder directly;
or the predictions in the import format of a review tool.

    python tools/export_predictions.py predictions.jsonl --out clips.csv --summary videos.csv
    python tools/export_predictions.py videos/ --model runs/demo --window 4 --stride 2 --out clips.csv
    python tools/export_predictions.py timeline.jsonl --to label-studio --out tasks.json
    python tools/export_predictions.py timeline.jsonl --to fiftyone --out fo/
    python tools/export_predictions.py timeline.jsonl --to cvat --out cvat/

clips.csv:  path,start_s,end_s,label,score            (one row per window / clip)
videos.csv: path,label,score,kind,duration_s,num_clips,majority_clip_label,error
label-studio: tasks.json (+ tasks.config.xml, the labelling config; tasks.images.json for photos)
fiftyone:   fo/videos/labels.json (temporal detections), fo/images/labels.json (classifications)
cvat:       cvat/<video path>.xml (a tag per frame, CVAT 1.1), cvat/images.xml
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
@click.option("--out", required=True, type=click.Path(),
              help="Clip-level CSV, Label Studio JSON, or a folder for FiftyOne / CVAT.")
@click.option("--to", "fmt", type=click.Choice(["csv", "label-studio", "fiftyone", "cvat"]), default="csv",
              show_default=True, help="What to write.")
@click.option("--url-prefix", default="",
              help="Label Studio: prepended to each path, e.g. /data/local-files/?d=")
@click.option("--summary", type=click.Path(), help="Also write a per-video summary CSV.")
@click.option("--model", "models", multiple=True, help="Label a folder first with these models.")
@click.option("--window", type=float, default=None, help="Window length (s) when labelling a folder.")
@click.option("--stride", type=float, default=None, help="Window stride (s) when labelling a folder.")
def export(source: str, out: str, fmt: str, url_prefix: str, summary: str | None,
           models: tuple[str, ...], window: float | None, stride: float | None) -> None:
    from xmodal.engine.export import (
        CLIP_COLUMNS,
        SUMMARY_COLUMNS,
        clip_rows,
        read_records,
        summary_rows,
        write_table,
    )

    if summary and fmt != "csv":
        raise click.UsageError("--summary goes with --to csv")
    failed = 0
    if Path(source).is_dir():
        source, failed = _label_folder(source, models, window, stride)
    records = list(read_records(source))
    if fmt != "csv":
        _export_for_review(records, fmt, Path(out), url_prefix)
    else:
        n = write_table(out, CLIP_COLUMNS, clip_rows(records))
        click.echo(display(f"wrote {n} clip rows to {out}"))
        if summary:
            m = write_table(summary, SUMMARY_COLUMNS, summary_rows(records))
            click.echo(display(f"wrote {m} file rows to {summary}"))
    if failed:  # as xmodal label: the others' rows are written, the exit code says some failed
        raise SystemExit(1)


def _export_for_review(records: list[dict], fmt: str, out: Path, url_prefix: str) -> None:
    from xmodal.engine import review_tools

    written = review_tools.write(records, fmt, out, url_prefix=url_prefix)
    counts = ", ".join(f"{n} {what}" for what, n in written.counts.items()) or "nothing"
    failed = sum("error" in r for r in records)
    left_out = f"; left out {failed} failed file(s)" if failed else ""
    shown = written.files[0] if len(written.files) == 1 else f"{len(written.files)} files in {out}"
    click.echo(display(f"wrote {counts} for {fmt} to {shown}{left_out}"))


def _label_folder(folder: str, models: tuple[str, ...], window: float | None,
                  stride: float | None) -> tuple[str, int]:
    """Label ``folder`` into a temporary JSONL: (its path, how many files failed)."""
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
    return str(out), label_files(predictor, scan.files, out).failed


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
