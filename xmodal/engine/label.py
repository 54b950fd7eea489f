"""Batch labelling of folders into a resumable JSONL or CSV file.

Each file's record is written with one ``write`` call and flushed, so a crash
(even ``kill -9``) loses at most the record in flight. Re-running the same
command reads the output, drops a torn last line (in a CSV, the last file's rows,
of which a torn write may have kept only some), skips the files already
there and appends the rest in the same order: the final file equals an
uninterrupted run's. Files recorded as failed are tried again (their records
move to the end). Every file name round-trips, whatever its bytes (see ``xmodal.names``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmodal.engine.inputs import Scan, scan_paths
from xmodal.engine.output import LABEL_SEPARATOR, csv_text, json_line, safe_cell, unsafe_cell
from xmodal.engine.predict import Predictor
from xmodal.engine.reporting import Reporter
from xmodal.errors import ConfigError, DatasetError, InputError
from xmodal.names import from_bytes, to_bytes

CSV_COLUMNS = ["path", "label", "score", "top", "kind", "frames", "duration_s", "start_s", "end_s",
               "sampled_s", "model", "error", "labels"]


@dataclass
class LabelSummary:
    out: Path
    done: int
    skipped: int
    failed: int

    @property
    def total(self) -> int:
        return self.done + self.skipped + self.failed


def output_format(out: Path) -> str:
    suffix = out.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ConfigError(f"{out}: output must end in .jsonl or .csv")


def find_files(folders: Sequence[str | os.PathLike[str]], globs: tuple[str, ...] = ()) -> Scan:
    """Every media file under ``folders`` in a deterministic order, and the files of unsupported
    type that were passed over; a missing folder, or one without media, is an error."""
    for folder in folders:
        if not Path(folder).exists():
            raise InputError(folder, "no such file or directory")
    scan = scan_paths(folders, globs=globs)
    if not scan.files:
        what = f"matching {', '.join(globs)}" if globs else "with a video or image extension"
        raise DatasetError(", ".join(str(f) for f in folders), f"no files {what}")
    return scan


class RecordWriter:
    """Appends one file's record(s) per call in a single write, then flushes."""

    def __init__(self, out: Path, *, overwrite: bool = False,
                 files: Sequence[Path] | None = None) -> None:
        self.out = out
        self.format = output_format(out)
        self.done: set[str] = set()
        self.retried: list[str] = []  # failed before: their records dropped, tried again
        self.models: set[str] = set()  # the models that wrote the records kept
        out.parent.mkdir(parents=True, exist_ok=True)
        if overwrite or not out.exists():
            out.write_bytes(b"")
        else:
            self._recover(None if files is None else {str(f) for f in files})
        self._fd = os.open(out, os.O_WRONLY | os.O_APPEND)
        if self.format == "csv" and out.stat().st_size == 0:
            self._write(csv_text([CSV_COLUMNS]))

    def _recover(self, labelling: set[str] | None) -> None:
        """Set ``done`` to the paths already recorded, after cutting off what must be redone:
        a torn last line (a crash mid-write); in a CSV the last file's rows, whole or not (a
        file's rows go in one write, which a crash can cut at a row's end); failed records.
        Only files of this run (``labelling``; None: any) are redone: the others' records stay."""
        from xmodal.checkpoint import atomic_write_bytes

        data = self.out.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.out, "r+b") as fh:
                fh.truncate(end)
        blocks = read_blocks(self.out)
        ours = blocks if labelling is None else [p for p in blocks if p in labelling]
        self.retried = [p for p in ours if _block_field(self.format, blocks[p], "error")]
        redo = set(self.retried)
        if self.format == "csv" and blocks and next(reversed(blocks)) in ours:
            redo.add(next(reversed(blocks)))
        last = to_bytes(blocks[next(reversed(blocks))]) if blocks else b""
        if redo == {next(reversed(blocks), None)} and data[:end].endswith(last):
            with open(self.out, "r+b") as fh:  # in place: a link or the file's mode stays
                fh.truncate(end - len(last))
        elif redo:
            kept = "".join(block for p, block in blocks.items() if p not in redo)
            header = csv_text([CSV_COLUMNS]) if self.format == "csv" else ""
            atomic_write_bytes(self.out, to_bytes(header + kept))
        self.done = set(blocks) - redo
        self.models = {_block_field(self.format, blocks[p], "model") for p in self.done} - {""}

    def write(self, record: dict[str, Any]) -> None:
        if self.format == "jsonl":
            self._write(json_line(record) + "\n")
        else:
            self._write(csv_text(_csv_rows(record)))

    def _write(self, text: str) -> None:
        os.write(self._fd, to_bytes(text))

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_blocks(out: Path) -> dict[str, str]:
    """Each recorded file's text (its JSON line, or its CSV rows), in file order.

    A torn last line is ignored; anything else that is not a record is an error.
    """
    fmt = output_format(out)
    text = from_bytes(out.read_bytes())
    text = text[:text.rfind("\n") + 1]
    blocks: dict[str, str] = {}
    if fmt == "jsonl":
        # Lines end at "\n" only: a name may hold U+2028 or U+0085, which splitlines() splits at.
        for number, line in enumerate(text.split("\n")[:-1], 1):
            line += "\n"
            if not line.strip():
                continue
            try:
                path = json.loads(line)["path"]
            except (ValueError, KeyError, TypeError):
                raise InputError(out, f"line {number} is not a labelling record; "
                                 "use --overwrite to start over") from None
            blocks.setdefault(path, line)
        return blocks
    rows = list(csv.reader(io.StringIO(text)))
    if rows and rows[0] != CSV_COLUMNS:
        raise InputError(out, "not an xmodal labelling CSV; use --overwrite to start over")
    for row in rows[1:]:
        if row:
            path = unsafe_cell(row[0])
            blocks[path] = blocks.get(path, "") + csv_text([row])
    return blocks


def _block_field(fmt: str, block: str, name: str) -> str:
    """A recorded file's ``name`` field ("error", "model"; "" when absent) from its block of
    ``read_blocks``: its JSON line, or its first CSV row (the file's own)."""
    if fmt == "jsonl":
        return str(json.loads(block).get(name) or "")
    row = next(csv.reader(io.StringIO(block)))
    index = CSV_COLUMNS.index(name)
    return unsafe_cell(row[index]) if index < len(row) else ""


def _csv_rows(record: dict[str, Any]) -> list[list[Any]]:
    """One row for the file, then one per window (with start_s / end_s)."""

    def row(r: dict[str, Any], start: Any = "", end: Any = "") -> list[Any]:
        top = ";".join(f"{t['label']}:{t['score']:.6f}" for t in r.get("top", []))
        times = " ".join(str(t) for t in r.get("sampled_s") or ())
        values = [record["path"], r.get("label", ""), r.get("score", ""), top,
                  record.get("kind", ""), record.get("frames", ""), record.get("duration_s", ""),
                  start, end, times, record.get("model", ""), record.get("error", ""),
                  LABEL_SEPARATOR.join(r.get("labels", []))]
        return [safe_cell("" if v is None else v) for v in values]

    return [row(record)] + [row(c, c["start_s"], c["end_s"]) for c in record.get("clips", [])]


def label_files(predictor: Predictor, files: Sequence[Path], out: Path, *, overwrite: bool = False,
                reporter: Reporter | None = None) -> LabelSummary:
    """Label ``files`` into ``out``, skipping those already recorded there."""
    reporter = reporter or Reporter()
    with RecordWriter(out, overwrite=overwrite, files=files) as writer:
        todo = [f for f in files if str(f) not in writer.done]
        skipped = len(files) - len(todo)
        if skipped:
            reporter.info(f"resuming: {skipped} of {len(files)} files already in {out}")
        if writer.retried:
            reporter.info(f"trying again {len(writer.retried)} file(s) recorded as failed in {out}")
        others = sorted(m for m in writer.models if not _same_model(m, predictor.name))
        if others:
            reporter.warning(f"{out}: holds records written by {', '.join(others)}; the files "
                             f"left are labelled by {predictor.name} (--overwrite starts over)")
        done = failed = 0
        for record in _records(predictor, todo, reporter):
            writer.write(record)
            if "error" in record:
                failed += 1
                reporter.warning(f"{record['path']}: {record['error']}")
            else:
                done += 1
    return LabelSummary(out, done, skipped, failed)


def _same_model(recorded: str, name: str) -> bool:
    """Whether a record's ``model`` names the predictor's model: the same text, or the same
    path typed another way (``runs/demo`` and ``./runs/demo/``; fused models: each part)."""
    if recorded == name:
        return True
    a, b = recorded.split("+"), name.split("+")
    return len(a) == len(b) and all(os.path.realpath(x) == os.path.realpath(y)
                                    for x, y in zip(a, b, strict=True))


def _records(predictor: Predictor, files: Sequence[Path],
             reporter: Reporter) -> Iterator[dict[str, Any]]:
    yield from predictor.iter_items([str(f) for f in files], reporter)


def part_path(out: Path, rank: int, world_size: int) -> Path:
    return out.with_name(f"{out.stem}.part{rank}-of-{world_size}{out.suffix}")


def label_sharded(predictor: Predictor, files: Sequence[Path], out: Path, *, overwrite: bool = False,
                  reporter: Reporter | None = None) -> LabelSummary:
    """Under torchrun: rank r labels files r, r+W, ... into its own part file; rank 0 merges.

    Without torchrun this is ``label_files``. Parts resume like a single run,
    so re-running after one rank failed redoes only what is missing.
    """
    from xmodal.engine import distributed

    info = distributed.env_info()
    if not info.enabled:
        return label_files(predictor, files, out, overwrite=overwrite, reporter=reporter)
    if overwrite and info.is_main:
        out.unlink(missing_ok=True)
    distributed.barrier()
    fmt = output_format(out)
    merged = ({p for p, block in read_blocks(out).items() if not _block_field(fmt, block, "error")}
              if out.exists() else set())  # failed files are tried again
    mine = [f for i, f in enumerate(files) if i % info.world_size == info.rank and str(f) not in merged]
    part = label_files(predictor, mine, part_path(out, info.rank, info.world_size),
                       overwrite=overwrite, reporter=reporter)
    done, failed = distributed.sum_across([part.done, part.failed])
    distributed.barrier()
    if info.is_main:
        merge_parts(out, [part_path(out, r, info.world_size) for r in range(info.world_size)], files)
    distributed.barrier()
    return LabelSummary(out, int(done), len(files) - int(done) - int(failed), int(failed))


def merge_parts(out: Path, parts: Sequence[Path], files: Sequence[Path]) -> None:
    """Write ``out`` = its old records + the parts', in the global file order; drop the parts."""
    from xmodal.checkpoint import atomic_write_bytes

    blocks: dict[str, str] = read_blocks(out) if out.exists() else {}
    for part in parts:
        if part.exists():
            for path, text in read_blocks(part).items():  # a new record replaces a failed one
                if path not in blocks or _block_field(output_format(out), blocks[path], "error"):
                    blocks[path] = text
    order = {str(f): i for i, f in enumerate(files)}
    ranked = sorted(blocks, key=lambda p: (order.get(p, len(order)), p))
    header = csv_text([CSV_COLUMNS]) if output_format(out) == "csv" else ""
    atomic_write_bytes(out, to_bytes(header + "".join(blocks[p] for p in ranked)))
    for part in parts:
        part.unlink(missing_ok=True)
