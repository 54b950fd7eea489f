"""tools/bench_clip_styles.py: accuracy by clip style and one factor at a time, on real files."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import _bench_clips as clips
import bench_clip_styles as styles
import numpy as np

from tests.engine.conftest import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _spec(seed: int) -> clips.ClipSpec:
    return clips.draw_spec(np.random.default_rng(seed), "ink")


def test_clips_are_grouped_by_what_their_style_drew() -> None:
    specs = [_spec(s) for s in range(40)]
    found = [styles.style_of(s) for s in specs]
    assert {f["background"] for f in found} == {"photo", "noise", "plain"}
    for spec, style in zip(specs, found, strict=True):
        assert style["blur"] == ("yes" if spec.blur else "no") and style["motion"] == spec.motion
    bins = {scale: styles.style_of(dataclasses.replace(specs[0], scale=(scale, scale)))["scale"]
            for scale in (0.4, 0.549, 0.55, 0.7, 0.9)}
    assert bins == {0.4: "0.40-0.55", 0.549: "0.40-0.55", 0.55: "0.55-0.70", 0.7: "0.70-0.90",
                    0.9: "0.70-0.90"}
    table = styles.by_style([{"background": "photo"}, {"background": "photo"}, {"background": "plain"}],
                            [True, False, True])
    assert table == {"background": {"photo": [0.5, 2], "plain": [1.0, 1]}}


def test_ink_is_the_polarity_render_draws_strokes_with() -> None:
    stroke = np.zeros((8, 8), np.uint8)
    stroke[2:6, 3:5] = 255
    seen = set()
    for seed in range(12):
        spec = dataclasses.replace(_spec(seed), noise=0.0, blur=0.0)
        frames, alpha = clips.render(stroke, spec, seed)
        inside, around = frames[0][alpha[0] > 0.95].mean(), frames[0][alpha[0] == 0].mean()
        ink = clips.ink_of(spec, seed)
        seen.add(ink)
        assert (inside < around) == (ink == "dark"), (seed, ink, inside, around)
    assert seen == {"dark", "light"}
    assert clips.ink_of(clips.draw_spec(np.random.default_rng(0), "card"), 0) is None


def test_renders_are_spread_over_the_classes() -> None:
    indices = [100 * c + j for c in range(10) for j in range(20)]  # class-major, 20 per class
    for count in (2, 30, 60, 150):
        picked = styles.spread(indices, 10, count)
        per_class = [sum(1 for i in picked if i // 100 == c) for c in range(10)]
        assert len(picked) == count and max(per_class) - min(per_class) <= 1
    assert styles.spread(indices[:10], 10, 100) == indices[:10]  # at most the test clips


def test_a_clean_render_changes_only_what_it_is_asked_to() -> None:
    spec = _spec(3)
    clean = styles.clean_spec(spec, **styles.FACTORS["black, 0.6"])
    assert clean.blur == 0 and clean.noise == 0 and clean.velocity == (0.0, 0.0) and clean.angle == (0.0, 0.0)
    assert clean.scale == (0.6, 0.6) and clean.tint == (0.0, 0.0, 0.0) and clean.background == "plain"
    assert clean.frames == min(spec.frames, 12) and clean.width == spec.width and clean.fps == spec.fps
    frames, alpha = clips.render(np.full((8, 8), 255, np.uint8), clean, 0)
    assert all(np.array_equal(frames[0], f) for f in frames[1:])  # still: every frame the same
    assert frames[0][alpha[0] == 0].mean() < 4  # black (with the plain background's grain) around it


def test_the_issue_clip_drifts_over_a_light_noisy_background_at_two_thirds() -> None:
    spec = _spec(5)
    issue = styles.clean_spec(spec, **styles.FACTORS["light, noisy, 0.67, drifting"])
    assert issue.scale == (0.67, 0.67) and issue.background == "plain" and issue.noise > 0
    assert issue.velocity != (0.0, 0.0) and issue.angle == (0.0, 0.0) and issue.blur == 0
    assert issue.bitrate == int(0.1 * spec.width * spec.height * spec.fps)  # the callable, resolved
    frames, alpha = clips.render(np.full((8, 8), 255, np.uint8), issue, 0)
    assert frames[0][alpha[0] == 0].mean() > 190  # light around the object
    centre = [np.argwhere(a > 0.5).mean(0) for a in (alpha[0], alpha[-1])]
    assert np.abs(centre[0] - centre[1]).max() > 5  # it moves
    side = np.sqrt((alpha[0] > 0.5).sum())
    assert abs(side / spec.height - 0.67) < 0.05  # two thirds of the short side


def test_end_to_end_prints_both_tables_and_refuses_a_run_of_other_classes(tmp_path: Path) -> None:
    # classes in another order than the dataset's (a run sorts its class folders by name)
    run = make_checkpoint(tmp_path / "run", [f"digit_{d}" for d in reversed(range(10))], frames=2)
    other = make_checkpoint(tmp_path / "other", ["a", "b"], frames=2)
    out = tmp_path / "styles.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, str(ROOT / "tools" / "bench_clip_styles.py"), "--dataset", "digits",
            "--test-clips", "1", "--cache", str(tmp_path / "cache")]
    done = subprocess.run([*base, str(run), "--renders", "2", "--out", str(out)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "digits: 10 test clips, accuracy" in done.stdout
    assert "one factor, photo (grass), 0.9:" in done.stdout
    report = json.loads(out.read_text())
    assert report["clips"] == 10
    assert set(report["by_style"]) == {"background", "scale", "motion", "blur", "noise", "ink"}
    assert sum(n for _, n in report["by_style"]["ink"].values()) == 10
    assert sum(n for _, n in report["by_style"]["motion"].values()) == 10
    assert set(report["one_factor"]) == set(styles.FACTORS)
    assert all(n == 2 and 0 <= a <= 1 for a, n in report["one_factor"].values())
    refused = subprocess.run([*base, str(other), "--renders", "0"], capture_output=True, text=True,
                             timeout=300, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "are not digits'" in refused.stderr
    for argv, message in (([str(tmp_path / "missing")], "missing"),
                          ([str(run), "--out", str(tmp_path / "no" / "s.json")], "folder does not exist")):
        bad = subprocess.run([*base, *argv, "--renders", "0"], capture_output=True, text=True,
                             timeout=300, env=env)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and message in bad.stderr
