"""How Predictor batches frames: what reaches the encoder, and what that does to the scores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xmodal.engine.label import find_files
from xmodal.engine.predict import Predictor, load_model


class CountingEncoder(torch.nn.Module):
    """Wraps an encoder and records the batch size of every forward pass."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.inner = encoder
        self.batches: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(images))
        return self.inner(images)


@pytest.fixture
def counted(three_class_checkpoint: Path):
    model = load_model(three_class_checkpoint)
    counter = CountingEncoder(model.model.encoder)
    model.model.encoder = counter
    return model, counter


def _scores(records: list[dict]) -> dict[str, list]:
    return {r["path"]: r["top"] for r in records}


def test_cpu_default_runs_each_file_alone_without_padding(counted, media_folder: Path) -> None:
    model, counter = counted
    files = [str(f) for f in find_files([media_folder]).files]
    records = Predictor(model, workers=0).predict(files)
    assert all("error" not in r for r in records)
    clips = sum(r["kind"] == "video" for r in records)
    stills = len(records) - clips
    # A 4-frame model: one pass of 4 frames per clip, one pass of 1 frame per still.
    assert sorted(counter.batches) == [1] * stills + [4] * clips


def test_cpu_default_scores_do_not_depend_on_the_other_files(three_class_checkpoint: Path,
                                                             media_folder: Path) -> None:
    predictor = Predictor(load_model(three_class_checkpoint), workers=0)
    files = [str(f) for f in find_files([media_folder]).files]
    whole = _scores(predictor.predict(files))
    for subset in (files[3:], files[::2], list(reversed(files))):
        assert _scores(predictor.predict(subset)) == {f: whole[f] for f in subset}


def test_batched_passes_are_full_and_mix_stills_with_clips(counted, media_folder: Path,
                                                           three_class_checkpoint: Path) -> None:
    model, counter = counted
    files = [str(f) for f in find_files([media_folder]).files]
    records = Predictor(model, workers=0, batch_size=2).predict(files)
    # Every pass holds exactly 2 clips' worth (2 x 4 frames), the last one padded.
    assert counter.batches and set(counter.batches) == {8}
    frames = sum(4 if r["kind"] == "video" else 1 for r in records)
    assert len(counter.batches) < frames / 4  # stills share passes with clips
    # Same answers as one file at a time, up to rounding in the last digits.
    alone = Predictor(load_model(three_class_checkpoint), workers=0).predict(files)
    for a, b in zip(records, alone, strict=True):
        assert a["label"] == b["label"] and a["path"] == b["path"]
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a["top"], b["top"], strict=True)) < 1e-4


def test_an_empty_folder_is_reported_and_the_other_files_still_predicted(
        three_class_checkpoint: Path, media_folder: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from xmodal.cli import cli

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    photo = next(media_folder.rglob("*.jpg"))
    records = Predictor(load_model(three_class_checkpoint), workers=0).predict([str(empty), str(photo)])
    assert records[0] == {"path": str(empty), "error": "folder holds no video or image files"}
    assert records[1]["path"] == str(photo) and "label" in records[1]
    run = CliRunner().invoke(cli, ["predict", str(three_class_checkpoint), str(empty), str(photo)])
    assert run.exit_code == 1
    assert f"xmodal: {empty}: folder holds no video or image files" in run.output
    assert str(photo) in run.output


def test_compile_keeps_the_scores(three_class_checkpoint: Path, media_folder: Path, fresh_dynamo) -> None:
    """--compile goes through torch.compile; the "eager" backend traces the same graph without
    inductor's minute of code generation, so the scores must not move."""
    files = [str(f) for f in find_files([media_folder]).files]
    plain = Predictor(load_model(three_class_checkpoint), workers=0).predict(files)
    model = load_model(three_class_checkpoint)
    compiled = Predictor(model, workers=0, compile="eager").predict(files)
    assert model.model.encoder._compiled_call_impl is not None
    for a, b in zip(plain, compiled, strict=True):
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert [t["score"] for t in a["top"]] == pytest.approx([t["score"] for t in b["top"]],
                                                               abs=1e-5)
