"""``xmodal embed``: pooled clip embeddings, written as an (N, D) ``.npy`` with a JSONL index.

A file's embedding is what the head reads: the encoder's pooled features of every sampled
frame, averaged over time (as TSN averages the logits) and over the ``clips x crops`` views.
With windows, each window of a video is one row. Decoding, worker isolation and batching are
``Predictor``'s; only the last step differs (features instead of probabilities). A run,
checkpoint or encoder name embeds on PyTorch; an ONNX export dir (``xmodal export``) on ONNX
Runtime, from its graph's ``embedding`` output (the same vectors to float rounding), without torch.

The output is resumable like ``label``'s: FILE.npy is a valid array of the rows written so
far (its header has room for any row count and is rewritten after each file), FILE.jsonl
names each row in order. A file's rows go to disk before its index lines, so after a crash
the index is the truth: rows it does not name are cut off and that file is done again.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmodal.engine.label import part_path
from xmodal.engine.output import json_line
from xmodal.engine.predict import LoadedModel, Predictor
from xmodal.engine.reporting import Reporter
from xmodal.errors import ConfigError, InputError, ModelError
from xmodal.names import from_bytes, to_bytes

if TYPE_CHECKING:
    import torch

# A .npy header of fixed size (format 1.0: magic, 2-byte length, a dict padded with spaces),
# large enough for any row count, so appending rows only rewrites these bytes in place.
HEADER_BYTES = 128
_MAGIC = b"\x93NUMPY\x01\x00"


@dataclass
class EmbedSummary:
    out: Path
    done: int
    skipped: int
    failed: int
    rows: int  # rows in the output after the run


class _EncoderOutput:
    """Stands in for a FrameClassifier where Predictor asks for per-frame logits: returns the
    head's input (the encoder's pooled features), (B, T, D)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def frame_logits(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        return self.model.encoder(self.model.normalise(clips.flatten(0, 1))).view(b, t, -1)


class Embedder(Predictor):
    """Embeds files, folders and arrays with one model's encoder; batching, decoding and
    windows as ``Predictor``. ``embed(inputs)`` returns ``(array (N, D), index entries)``."""

    def __init__(self, model: LoadedModel | Sequence[LoadedModel], **kwargs: Any) -> None:
        models = [model] if isinstance(model, LoadedModel) else list(model)
        if len(models) != 1:
            raise ModelError("embeddings come from one model; fusing several is for labels")
        first = models[0]
        if first.engine == "onnx" and not first.has_embedding:
            raise ModelError(f"{first.name}: this ONNX export has no embedding output (made by an "
                             "older xmodal); export the run again, or embed with the run directory")
        super().__init__(models, **kwargs)

    @property
    def dim(self) -> int:
        model = self.models[0]
        if model.engine == "onnx":
            return int(model.meta["embedding_dim"])
        return int(model.model.encoder.num_features)

    def _fused(self, groups: Sequence[Any]) -> list[np.ndarray]:
        """Features (N_i, D) float32 for groups of views: each view's frames averaged."""
        model = self.models[0]
        if model.engine == "onnx":
            return self._onnx_passes(model.embeddings, groups)
        import torch

        with torch.inference_mode():
            frames = torch.cat([g.flatten(0, 1) for g in groups])
            features = self._frame_logits(_EncoderOutput(model.model), frames)  # type: ignore[arg-type]
            out, start = [], 0
            for g in groups:
                n, t = g.shape[:2]
                out.append(features[start:start + n * t].view(n, t, -1).mean(1).float().cpu().numpy())
                start += n * t
            return out

    def iter_embeddings(self, items: Sequence[Any], reporter: Reporter | None = None,
                        names: Sequence[str] | None = None
                        ) -> Iterator[tuple[list[dict[str, Any]], np.ndarray]]:
        """Per item, in order: its index entries (without ``row``) and its rows (R, D) float32.

        One row per file (views averaged), or one per window for a video when windows are
        asked for; a file that fails gives ``[{"path", "error"}]`` and no rows.
        """
        from xmodal.engine.predict import _item_name

        names = names if names is not None else [_item_name(i) for i in items]
        for index, features, info, error in self.iter_probabilities(items, reporter):
            name = names[index]
            if features is None:
                yield [{"path": name, "error": error}], np.zeros((0, self.dim), np.float32)
                continue
            yield embedding_rows(name, np.asarray(features, dtype=np.float32), info)

    def embed(self, inputs: Any) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Rows (N, D) float32 for ``inputs`` (files, folders, arrays) and their index entries
        (``{"path", "row"}``, with ``start_s``/``end_s`` for windows); failures have no row."""
        from xmodal.engine.predict import _normalise_inputs

        items, _ = _normalise_inputs(inputs)
        rows: list[np.ndarray] = []
        index: list[dict[str, Any]] = []
        count = 0
        for entries, vectors in self.iter_embeddings(items):
            for entry in entries:
                if "error" not in entry:
                    entry["row"] = count
                    count += 1
                index.append(entry)
            rows.append(vectors)
        return np.concatenate(rows) if rows else np.zeros((0, self.dim), np.float32), index


def embedding_rows(name: str, features: np.ndarray, info: dict[str, Any]
                   ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """A file's index entries and rows from its per-view features (V, D): the mean of the
    averaged views, or one row per window when the file has windows."""
    n_avg = info.get("n_avg", 1)
    windows = info.get("windows")
    if windows:
        entries = [{"path": name, "start_s": a, "end_s": b} for a, b in windows]
        return entries, np.ascontiguousarray(features[n_avg:], dtype=np.float32)
    return [{"path": name}], features[:n_avg].mean(0, keepdims=True).astype(np.float32)


# --------------------------------------------------------------------------- output files

def index_path(out: Path) -> Path:
    """FILE.jsonl beside FILE.npy."""
    return out.with_suffix(".jsonl")


def _header(rows: int, dim: int) -> bytes:
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
    text = text.ljust(HEADER_BYTES - len(_MAGIC) - 2 - 1) + "\n"
    return _MAGIC + struct.pack("<H", len(text)) + text.encode("latin1")


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length in bytes) of a .npy file; InputError if it is not one."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read(fh)
            return shape, dtype, fh.tell()
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npy file ({exc}); use --overwrite to start over") from None


class EmbeddingWriter:
    """Appends each file's rows to FILE.npy and its index lines to FILE.jsonl, in that order."""

    def __init__(self, out: Path, *, overwrite: bool = False) -> None:
        if out.suffix.lower() != ".npy":
            raise ConfigError(f"{out}: the embeddings output must end in .npy")
        self.out, self.index = out, index_path(out)
        self.done: set[str] = set()
        self.rows = 0
        self.dim: int | None = None
        out.parent.mkdir(parents=True, exist_ok=True)
        if overwrite or not self.index.exists():
            out.unlink(missing_ok=True)
            self.index.write_bytes(b"")
        else:
            self._recover()
        self._index_fd = os.open(self.index, os.O_WRONLY | os.O_APPEND)
        self._array_fd = os.open(out, os.O_RDWR) if out.exists() else None

    def _recover(self) -> None:
        """Read the index back (a torn last line is cut off), then cut the array to its rows."""
        data = self.index.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(self.index, "r+b") as fh:
                fh.truncate(end)
        entries = read_index(self.index)
        self.done = {e["path"] for e in entries}
        self.rows = sum(1 for e in entries if "row" in e)
        if not self.out.exists():
            if self.rows:
                raise InputError(self.out, f"missing, but {self.index.name} names {self.rows} rows; "
                                 "use --overwrite to start over")
            return
        shape, dtype, header = read_npy_header(self.out)
        if dtype != np.dtype("<f4") or len(shape) != 2:
            raise InputError(self.out, f"holds {dtype} {shape}, not (N, D) float32 embeddings; "
                             "use --overwrite to start over")
        self.dim = int(shape[1])
        on_disk = (self.out.stat().st_size - header) // (4 * self.dim)
        if on_disk < self.rows:
            raise InputError(self.out, f"holds {on_disk} rows but {self.index.name} names "
                             f"{self.rows}; use --overwrite to start over")
        if header != HEADER_BYTES:  # written by someone else: re-write it with a roomy header
            array = np.load(self.out, mmap_mode="r")[:self.rows]
            with open(self.out, "wb") as fh:
                fh.write(_header(self.rows, self.dim))
                fh.write(np.ascontiguousarray(array, dtype="<f4").tobytes())
        with open(self.out, "r+b") as fh:
            fh.truncate(HEADER_BYTES + self.rows * self.dim * 4)
            fh.write(_header(self.rows, self.dim))

    def write(self, entries: list[dict[str, Any]], rows: np.ndarray) -> None:
        """One file: its rows (R, D) first, then the header, then its index lines."""
        if len(rows):
            if self._array_fd is None:
                self.dim = int(rows.shape[1])
                self._array_fd = os.open(self.out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
                os.write(self._array_fd, _header(0, self.dim))
            if rows.shape[1] != self.dim:
                raise InputError(self.out, f"holds {self.dim}-dimensional rows; this model gives "
                                 f"{rows.shape[1]} (a different model?); use --overwrite")
            offset = HEADER_BYTES + self.rows * self.dim * 4
            os.pwrite(self._array_fd, np.ascontiguousarray(rows, dtype="<f4").tobytes(), offset)
            os.pwrite(self._array_fd, _header(self.rows + len(rows), self.dim), 0)
        lines = []
        for entry in entries:
            if "error" not in entry:
                entry = {"path": entry["path"], "row": self.rows, **entry}
                self.rows += 1
            lines.append(json_line(entry) + "\n")
        os.write(self._index_fd, to_bytes("".join(lines)))
        self.done.add(entries[0]["path"])

    def close(self) -> None:
        for fd in (self._array_fd, self._index_fd):
            if fd is not None:
                os.fsync(fd)
                os.close(fd)

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_index(path: Path) -> list[dict[str, Any]]:
    """The entries of an embeddings index, in order (a torn last line is ignored); rows must
    number 0, 1, 2, ... in the order they appear."""
    text = from_bytes(path.read_bytes())
    entries: list[dict[str, Any]] = []
    rows = 0
    # Lines end at "\n" only: a name may hold U+2028, which splitlines() splits at.
    for number, line in enumerate(text[:text.rfind("\n") + 1].split("\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            entry["path"]  # noqa: B018 - every entry names its file
        except (ValueError, KeyError, TypeError):
            raise InputError(path, f"line {number} is not an embeddings index entry; "
                             "use --overwrite to start over") from None
        if "row" in entry:
            if entry["row"] != rows:
                raise InputError(path, f"line {number}: row {entry['row']}, expected {rows}; "
                                 "use --overwrite to start over")
            rows += 1
        entries.append(entry)
    return entries


# --------------------------------------------------------------------------- runs

def embed_files(embedder: Embedder, files: Sequence[Path], out: Path, *, overwrite: bool = False,
                reporter: Reporter | None = None) -> EmbedSummary:
    """Embed ``files`` into ``out`` (+ its index), skipping those already recorded there."""
    reporter = reporter or Reporter()
    with EmbeddingWriter(out, overwrite=overwrite) as writer:
        todo = [f for f in files if str(f) not in writer.done]
        skipped = len(files) - len(todo)
        if skipped:
            reporter.info(f"resuming: {skipped} of {len(files)} files already in {out}")
        done = failed = 0
        for entries, rows in embedder.iter_embeddings([str(f) for f in todo], reporter):
            writer.write(entries, rows)
            if "error" in entries[0]:
                failed += 1
                reporter.warning(f"{entries[0]['path']}: {entries[0]['error']}")
            else:
                done += 1
        return EmbedSummary(out, done, skipped, failed, writer.rows)


def embed_sharded(embedder: Embedder, files: Sequence[Path], out: Path, *, overwrite: bool = False,
                  reporter: Reporter | None = None) -> EmbedSummary:
    """Under torchrun: rank r embeds files r, r+W, ... into its own part; rank 0 merges the
    parts into ``out`` in the global file order. Without torchrun this is ``embed_files``."""
    from xmodal.engine import distributed

    info = distributed.env_info()
    if not info.enabled:
        return embed_files(embedder, files, out, overwrite=overwrite, reporter=reporter)
    if overwrite and info.is_main:
        out.unlink(missing_ok=True)
        index_path(out).unlink(missing_ok=True)
    distributed.barrier()
    merged = {e["path"] for e in read_index(index_path(out))} if index_path(out).exists() else set()
    mine = [f for i, f in enumerate(files) if i % info.world_size == info.rank and str(f) not in merged]
    part = embed_files(embedder, mine, part_path(out, info.rank, info.world_size),
                       overwrite=overwrite, reporter=reporter)
    done, failed = distributed.sum_across([part.done, part.failed])
    distributed.barrier()
    rows = 0
    if info.is_main:
        rows = merge_parts(out, [part_path(out, r, info.world_size) for r in range(info.world_size)],
                           files)
    distributed.barrier()
    return EmbedSummary(out, int(done), len(files) - int(done) - int(failed), int(failed), rows)


def merge_parts(out: Path, parts: Sequence[Path], files: Sequence[Path]) -> int:
    """Append the parts' files to ``out`` in the global file order, then drop the parts.

    ``out``'s own rows stay first and in place, and each file is appended whole, so a merge
    interrupted at any moment is finished by the next run. Returns the rows in ``out``.
    """
    order = {str(f): i for i, f in enumerate(files)}
    found: list[tuple[int, str, Path, list[dict[str, Any]]]] = []
    for part in parts:
        if index_path(part).exists():
            by_path: dict[str, list[dict[str, Any]]] = {}
            for entry in read_index(index_path(part)):
                by_path.setdefault(entry["path"], []).append(entry)
            found += [(order.get(p, len(order)), p, part, e) for p, e in by_path.items()]
    arrays: dict[Path, np.ndarray] = {}
    with EmbeddingWriter(out) as writer:
        for _, path, part, entries in sorted(found, key=lambda f: (f[0], f[1])):
            if path in writer.done:
                continue
            rows = [e.pop("row") for e in entries if "row" in e]
            vectors = np.zeros((0, writer.dim or 1), np.float32)
            if rows:
                if part not in arrays:
                    arrays[part] = np.load(part, mmap_mode="r")
                vectors = np.asarray(arrays[part][rows[0]:rows[-1] + 1])
            writer.write(entries, vectors)
        total = writer.rows
    for part in parts:
        part.unlink(missing_ok=True)
        index_path(part).unlink(missing_ok=True)
    return total


def load_embedder(model: str | os.PathLike[str], **kwargs: Any) -> Embedder:
    """``xmodal.load_embedder("runs/x")``: an Embedder for a run dir, checkpoint, encoder name
    (PyTorch) or ONNX export dir (ONNX Runtime); keywords as ``xmodal.load`` (device,
    batch_size, workers, window_s, ...)."""
    from xmodal.engine.predict import load_model

    return Embedder(load_model(model), **kwargs)
