"""Temperature scaling, ECE and --min-score: known answers, real data, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_harness import run_cli, tiny_model
from tests.utils import write_image, write_video
from xmodal.engine.calibration import (
    UNKNOWN,
    calibration_summary,
    clip_scores,
    coverage_table,
    expected_calibration_error,
    fit_temperature,
    temperature_scaled,
)


def test_ece_known_answer() -> None:
    # Bin (0.8, 0.867]: 4 files at 0.85, 3 right -> |0.75 - 0.85|; bin (0.533, 0.6]: 2 at 0.6, 1 right.
    probs = np.array([[0.85, 0.15]] * 4 + [[0.4, 0.6]] * 2)
    targets = np.array([0, 0, 0, 1, 1, 0])
    expected = 4 / 6 * abs(0.75 - 0.85) + 2 / 6 * abs(0.5 - 0.6)
    assert expected_calibration_error(probs, targets) == pytest.approx(expected)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0  # sure and right


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 5, generator=generator) * 2
    labels = torch.multinomial((logits * 2).softmax(1), 1, generator=generator)[:, 0]  # T = 0.5
    assert fit_temperature(logits, labels) == pytest.approx(0.5, abs=0.02)
    # A split the model gets all right: the NLL falls all the way to T -> 0; nothing is fitted.
    right = logits.argmax(1)
    assert fit_temperature(logits, right) is None
    summary = calibration_summary(logits, right)
    assert summary["temperature"] == 1.0 and "no temperature fitted" in summary["note"]
    assert summary["ece_after"] == summary["ece_before"]


def test_on_a_held_out_split_of_real_data_the_ece_falls() -> None:
    """Handwritten digits (scikit-learn's, real scans): an almost unregularised logistic
    regression is overconfident; the temperature fitted on a validation split lowers the ECE
    on a test split it never saw, and leaves every prediction as it was."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    train, val, test = order[:200], order[200:700], order[700:]
    classifier = LogisticRegression(C=1e4, max_iter=5000).fit(x[train] / 16, y[train])
    val_logits = torch.tensor(classifier.decision_function(x[val] / 16))
    test_logits = torch.tensor(classifier.decision_function(x[test] / 16))
    summary = calibration_summary(val_logits, torch.tensor(y[val]))
    temperature = summary["temperature"]
    assert temperature > 1.5  # overconfident: scores are softened
    assert summary["nll_after"] < summary["nll_before"]
    before = test_logits.softmax(1).numpy()
    after = clip_scores(test_logits, {"temperature": temperature}).numpy()
    assert expected_calibration_error(after, y[test]) < 0.5 * expected_calibration_error(before, y[test])
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))


def test_temperature_scaling_of_probabilities_equals_scaling_the_logits() -> None:
    logits = torch.randn(50, 7, dtype=torch.float64) * 3
    probs = logits.softmax(1).numpy()
    scaled = temperature_scaled(probs, 0.7)
    np.testing.assert_allclose(scaled, (logits / 0.7).softmax(1).numpy(), atol=1e-12)
    np.testing.assert_allclose(temperature_scaled(scaled, 1 / 0.7), probs, atol=1e-12)


def test_coverage_table_known_answer() -> None:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    targets = np.array([0, 1, 1, 1])  # right, wrong, right, right
    rows = {r["min_score"]: r for r in coverage_table(probs, targets, [0.0, 0.58, 0.95])}
    assert rows[0.0] == {"min_score": 0.0, "coverage": 1.0, "accuracy": 0.75, "files": 4}
    assert rows[0.58] == {"min_score": 0.58, "coverage": 0.75, "accuracy": pytest.approx(2 / 3, abs=1e-4),
                          "files": 3}
    assert rows[0.95]["coverage"] == 0.0 and np.isnan(rows[0.95]["accuracy"])


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, float]]:
    """A model, a folder of photos and videos, and each file's top score without --min-score."""
    root = tmp_path_factory.mktemp("minscore")
    model = tiny_model(root / "m", ["a", "b", "c"])
    rng = np.random.default_rng(0)
    for i in range(5):
        write_image(root / "in" / f"p{i}.png", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    write_video(root / "in" / "v.mp4", 40, size=(64, 48), fps=10)
    run = run_cli("predict", str(model), str(root / "in"), "--format", "json", "--workers", "0")
    assert run.code == 0, run.err
    scores = {r["path"]: r["score"] for r in map(json.loads, run.out.splitlines())}
    assert len(set(scores.values())) == 6
    return model, root / "in", scores


def test_min_score_labels_exactly_the_files_below_it(scored: tuple[Path, Path, dict[str, float]]) -> None:
    model, folder, scores = scored
    threshold = float(np.median(list(scores.values())))
    run = run_cli("predict", str(model), str(folder), "--format", "json", "--workers", "0",
                  "--min-score", str(threshold))
    records = [json.loads(line) for line in run.out.splitlines()]
    below = {r["path"] for r in records if r["label"] == UNKNOWN}
    assert below == {p for p, s in scores.items() if s < threshold} and len(below) == 3
    for r in records:  # the scores and the top list stay
        assert r["score"] == scores[r["path"]] and r["top"][0]["score"] == r["score"]
        assert r["top"][0]["label"] != UNKNOWN


def test_label_min_score_applies_to_files_and_windows(scored: tuple[Path, Path, dict[str, float]],
                                                      tmp_path: Path) -> None:
    model, folder, _ = scored
    out = tmp_path / "l.jsonl"
    run = run_cli("label", str(folder), "--model", str(model), "--out", str(out), "--workers", "0",
                  "--window", "1", "--min-score", "0.99")  # above every score: all unknown
    assert run.code == 0, run.err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["label"] for r in records} == {UNKNOWN}
    windows = [c for r in records for c in r.get("clips", [])]
    assert len(windows) == 4 and {c["label"] for c in windows} == {UNKNOWN}
    assert all(c["top"][0]["label"] in ("a", "b", "c") for c in windows)


def test_eval_reports_ece_before_and_after_and_coverage(tmp_path: Path) -> None:
    from skimage.data import astronaut, chelsea, coffee

    from xmodal.checkpoint import read_metadata

    data = tmp_path / "data"
    for name, image in (("a", astronaut()), ("b", chelsea()), ("c", coffee())):
        write_image(data / name / "x.png", image)
        write_image(data / name / "y.png", image[:, ::-1].copy())
    plain = tiny_model(tmp_path / "plain", ["a", "b", "c"])
    warm = tiny_model(tmp_path / "warm", ["a", "b", "c"])
    meta = read_metadata(warm)
    (warm / "model.json").write_text(json.dumps({**meta, "temperature": 0.05}))
    reports = {}
    for name, model in (("plain", plain), ("warm", warm)):
        run = run_cli("eval", str(model), "--data", str(data), "--out", str(tmp_path / name),
                      "--workers", "0", "--quiet", "--min-score", "0.6")
        assert run.code == 0, run.err
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
        assert "calibration: temperature" in run.out and "<- --min-score" in run.out
    plain_cal, warm_cal = reports["plain"]["calibration"], reports["warm"]["calibration"]
    assert plain_cal["ece"] == plain_cal["ece_uncalibrated"]
    # One pass gives the scores before the temperature too: they are the plain model's.
    assert warm_cal["ece_uncalibrated"] == pytest.approx(plain_cal["ece"], abs=1e-4)
    assert warm_cal["temperature"] == 0.05 and warm_cal["ece"] != plain_cal["ece"]
    assert reports["warm"]["video_level"] == reports["plain"]["video_level"]  # argmax unchanged
    rows = {r["min_score"]: r for r in reports["warm"]["coverage"]}
    assert sorted(rows) == [0.0, 0.3, 0.5, 0.6, 0.7, 0.9]
    assert rows[0.0]["coverage"] == 1.0 and rows[0.0]["files"] == 6
