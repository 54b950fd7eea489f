"""``xmodal embed``: rows in file order, the head's input averaged over time, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_harness import run_cli, tiny_model
from tests.utils import write_image, write_video
from xmodal.engine.embed import (
    HEADER_BYTES,
    Embedder,
    EmbeddingWriter,
    embed_files,
    index_path,
    merge_parts,
    read_index,
)
from xmodal.engine.label import find_files
from xmodal.engine.predict import load_model
from xmodal.errors import InputError, ModelError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("embed") / "m", ["a", "b"])


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> Embedder:
    return Embedder(load_model(model_dir), workers=0)


def _index(out: Path) -> list[dict]:
    return [json.loads(line) for line in index_path(out).read_text().splitlines()]


def test_rows_are_the_files_in_order_and_each_is_its_own_embedding(
        model_dir: Path, embedder: Embedder, media_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npy"
    run = run_cli("embed", str(model_dir), str(media_folder), "--out", str(out), "--workers", "0")
    assert run.code == 0, run.err
    array = np.load(out)
    files = find_files([media_folder]).files
    assert array.shape == (len(files), 1280) and array.dtype == np.float32
    assert _index(out) == [{"path": str(f), "row": i} for i, f in enumerate(files)]
    # Row i is file i embedded on its own: the order is the index's, not a batch's.
    for i in (0, 5, 8):
        alone, entries = embedder.embed([str(files[i])])
        assert entries == [{"path": str(files[i]), "row": 0}]
        np.testing.assert_allclose(array[i], alone[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(array[0], array[8], atol=1e-2)  # a clip and a photo: different rows
    assert "embedded 9, skipped 0" in run.out and "(9 x 1280)" in run.out


def test_the_embedding_is_the_heads_input_averaged_over_time(embedder: Embedder) -> None:
    """Known answer from the model itself: the head applied to the embedding gives the clip's
    logits (mean pooling of linear per-frame logits = linear head of the mean feature)."""
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    rows, _ = embedder.embed([clip])
    model = embedder.models[0].model
    with torch.inference_mode():
        views, _ = embedder.reader(clip)  # (1, 2, 3, 64, 64): resized and cropped as inference does
        logits = model(views)[0]
        from_embedding = model.head(torch.from_numpy(rows[0]))
    torch.testing.assert_close(from_embedding, logits, rtol=1e-4, atol=1e-4)


def test_a_still_and_a_clip_of_identical_frames_give_the_same_vector(embedder: Embedder,
                                                                   tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
    rows, _ = embedder.embed([frame, np.stack([frame] * 5)])
    np.testing.assert_allclose(rows[0], rows[1], rtol=1e-5, atol=1e-5)
    # The same through files: a PNG, and a lossless (FFV1, RGB) video of that frame 6 times.
    photo = write_image(tmp_path / "still.png", frame)
    video = write_video(tmp_path / "still.mkv", frames=[frame] * 6, size=(96, 72), codec="ffv1",
                        pix_fmt="bgr0")
    from_files, entries = embedder.embed([str(photo), str(video)])
    assert [e["row"] for e in entries] == [0, 1]
    np.testing.assert_allclose(from_files[0], rows[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(from_files[1], rows[0], rtol=1e-5, atol=1e-5)


def test_windows_give_one_row_each_with_their_times(model_dir: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "in" / "long.mp4", 60, size=(64, 48), fps=10)  # 6 s
    write_image(tmp_path / "in" / "photo.jpg")
    out = tmp_path / "timeline.npy"
    run = run_cli("embed", str(model_dir), str(tmp_path / "in"), "--out", str(out),
                  "--window", "2", "--stride", "2", "--workers", "0")
    assert run.code == 0, run.err
    index = _index(out)
    assert index[:3] == [{"path": str(clip), "row": 0, "start_s": 0.0, "end_s": 2.0},
                         {"path": str(clip), "row": 1, "start_s": 2.0, "end_s": 4.0},
                         {"path": str(clip), "row": 2, "start_s": 4.0, "end_s": 6.0}]
    assert index[3] == {"path": str(tmp_path / "in" / "photo.jpg"), "row": 3}  # a still: one row
    array = np.load(out)
    assert array.shape == (4, 1280)
    assert not np.allclose(array[0], array[2], atol=1e-3)  # the pattern moves: windows differ


def test_a_bad_file_gets_an_error_line_and_no_row(model_dir: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "a.jpg")
    (tmp_path / "in" / "b.mp4").write_bytes(b"not a video")
    write_image(tmp_path / "in" / "c.png")
    out = tmp_path / "emb.npy"
    run = run_cli("embed", str(model_dir), str(tmp_path / "in"), "--out", str(out), "--workers", "0")
    assert run.code == 1
    index = _index(out)
    assert [("row" in e, "error" in e) for e in index] == [(True, False), (False, True), (True, False)]
    assert [e.get("row") for e in index] == [0, None, 1]
    assert np.load(out).shape == (2, 1280)
    assert any(line.startswith("warning: ") and "b.mp4" in line for line in run.err_lines)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(
        embedder: Embedder, media_folder: Path, tmp_path: Path) -> None:
    files = find_files([media_folder]).files
    reference = tmp_path / "ref.npy"
    embed_files(embedder, files, reference)
    out = tmp_path / "out.npy"
    first = embed_files(embedder, files[:4], out)
    assert (first.done, first.rows) == (4, 4)
    # A crash while writing file 5: its rows reached the array, half its index line did not.
    with open(out, "ab") as fh:
        fh.write(np.ones((1, 1280), "<f4").tobytes())
    with open(index_path(out), "ab") as fh:
        fh.write(b'{"path": "' + bytes(str(files[4]), "utf-8"))
    resumed = embed_files(embedder, files, out)
    assert (resumed.done, resumed.skipped, resumed.rows) == (len(files) - 4, 4, len(files))
    assert index_path(out).read_bytes() == index_path(reference).read_bytes()
    assert out.read_bytes() == reference.read_bytes()
    again = embed_files(embedder, files, out)  # nothing left to do: nothing changes
    assert (again.done, again.skipped) == (0, len(files))
    assert out.read_bytes() == reference.read_bytes()


def test_the_array_is_a_valid_npy_after_every_file(embedder: Embedder, tmp_path: Path) -> None:
    out = tmp_path / "e.npy"
    rng = np.random.default_rng(0)
    with EmbeddingWriter(out) as writer:
        for k in range(3):
            rows = rng.standard_normal((k + 1, 7)).astype(np.float32)
            writer.write([{"path": f"f{k}"}] * (k + 1), rows)
            assert np.load(out).shape == (sum(range(1, k + 2)), 7)
    assert out.stat().st_size == HEADER_BYTES + 6 * 7 * 4
    assert [e["row"] for e in read_index(index_path(out))] == list(range(6))


def test_an_array_written_by_numpy_is_resumed_too(tmp_path: Path) -> None:
    out = tmp_path / "e.npy"
    with EmbeddingWriter(out) as writer:
        writer.write([{"path": "a"}], np.ones((1, 3), np.float32))
    np.save(out, np.load(out))  # e.g. re-saved by a user: numpy's own, shorter header
    with EmbeddingWriter(out) as writer:
        assert writer.done == {"a"}
        writer.write([{"path": "b"}], np.full((1, 3), 2, np.float32))
    np.testing.assert_array_equal(np.load(out), [[1, 1, 1], [2, 2, 2]])


def test_an_index_naming_more_rows_than_the_array_holds_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "e.npy"
    with EmbeddingWriter(out) as writer:
        writer.write([{"path": "a"}], np.ones((1, 3), np.float32))
    with open(index_path(out), "a") as fh:
        fh.write('{"path": "b", "row": 1}\n')
    with pytest.raises(InputError, match="holds 1 rows but e.jsonl names 2"):
        EmbeddingWriter(out)


def test_sharded_parts_merge_into_the_single_process_output(embedder: Embedder, media_folder: Path,
                                                            tmp_path: Path) -> None:
    """What torchrun's ranks write (files r, r+W, ...), merged, equals one process's output."""
    files = find_files([media_folder]).files
    single = tmp_path / "single.npy"
    embed_files(embedder, files, single)
    out = tmp_path / "merged.npy"
    parts = [tmp_path / f"merged.part{r}-of-2.npy" for r in range(2)]
    for r, part in enumerate(parts):
        embed_files(embedder, files[r::2], part)
    assert merge_parts(out, parts, files) == len(files)
    assert out.read_bytes() == single.read_bytes()
    assert index_path(out).read_bytes() == index_path(single).read_bytes()
    assert not any(p.exists() or index_path(p).exists() for p in parts)


def test_bad_options_are_one_line_errors(model_dir: Path, media_folder: Path, tmp_path: Path) -> None:
    run = run_cli("embed", str(model_dir), str(media_folder), "--out", str(tmp_path / "e.csv"))
    assert run.code == 2 and "must end in .npy" in run.err
    run = run_cli("embed", str(model_dir), str(tmp_path / "missing"), "--out", str(tmp_path / "e.npy"))
    assert run.code != 0 and run.err_lines == [f"xmodal: error: {tmp_path / 'missing'}: no such file "
                                               "or directory"]
    with pytest.raises(ModelError, match="one model"):
        Embedder([load_model(model_dir)] * 2)
