from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.engine.conftest import make_checkpoint
from tests.utils import write_image, write_video
from xmodal.cli import main
from xmodal.engine.evaluate import confusion_matrix, evaluate_folder, per_class_metrics
from xmodal.engine.predict import Predictor, load_model
from xmodal.errors import ModelError


def test_confusion_and_per_class_metrics_known_answers() -> None:
    targets = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 1, 0])
    m = confusion_matrix(targets, preds, 3)
    assert m.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    per = per_class_metrics(m, ["a", "b", "c"])
    assert per["a"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert per["a"]["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert per["b"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert per["b"]["recall"] == 1.0
    assert per["c"] == {"precision": 0.0, "recall": 0.0, "accuracy": pytest.approx(5 / 6, abs=1e-4),
                        "support": 1}


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos filed under their ImageNet class names, one of them misfiled on purpose."""
    from skimage.data import chelsea, coffee

    root = tmp_path_factory.mktemp("imagenet") / "data"
    write_image(root / "Egyptian cat" / "cat.jpg", chelsea())
    write_video(root / "Egyptian cat" / "cat.mp4", frames=[chelsea()[:, :448]] * 6, size=(448, 300))
    write_image(root / "espresso" / "coffee.png", coffee())
    write_image(root / "espresso" / "misfiled_cat.jpg", chelsea())
    return root


def test_eval_on_real_photos_with_known_answers(imagenet_folder: Path) -> None:
    predictor = Predictor(load_model("efficientnet_lite0"), workers=0)
    report = evaluate_folder(predictor, imagenet_folder)
    assert report.video_level["top1"] == pytest.approx(0.75)
    assert report.video_level["count"] == 4
    assert report.by_kind["video"]["top1"] == 1.0
    assert report.by_kind["image"]["top1"] == pytest.approx(2 / 3, abs=1e-4)
    cat, espresso = predictor.classes.index("Egyptian cat"), predictor.classes.index("espresso")
    m = np.asarray(report.confusion)
    assert m[cat, cat] == 2 and m[espresso, espresso] == 1 and m[espresso, cat] == 1
    assert m.sum() == 4
    assert report.per_class["espresso"]["recall"] == 0.5


def test_multi_clip_multi_crop_eval_cli(imagenet_folder: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    try:
        main(["eval", "efficientnet_lite0", "--data", str(imagenet_folder), "--clips", "2",
              "--crops", "3", "--out", str(out), "--quiet", "--workers", "0"])
    except SystemExit as exc:
        assert not exc.code
    text = capsys.readouterr().out
    assert "video-level top-1 0.7500" in text and "clip-level" in text
    report = json.loads((out / "report.json").read_text())
    # 1 video x 2 clips x 3 crops + 3 images x 3 crops
    assert report["clip_level"]["count"] == 2 * 3 + 3 * 3
    assert report["settings"]["clips"] == 2 and report["settings"]["crops"] == 3
    assert report["settings"]["still_scale"] == 1.0  # an encoder name shows photos as they come
    png = (out / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_fusion_averages_probabilities(tmp_path: Path) -> None:
    a = make_checkpoint(tmp_path / "a", ["x", "y", "z"], seed=1)
    b = make_checkpoint(tmp_path / "b", ["x", "y", "z"], seed=2)
    clip = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    pa = Predictor(load_model(a), workers=0).predict([clip])[0]["top"]
    pb = Predictor(load_model(b), workers=0).predict([clip])[0]["top"]
    fused = Predictor([load_model(a), load_model(b)], workers=0).predict([clip])[0]["top"]
    sa = {t["label"]: t["score"] for t in pa}
    sb = {t["label"]: t["score"] for t in pb}
    for t in fused:
        assert t["score"] == pytest.approx((sa[t["label"]] + sb[t["label"]]) / 2, abs=2e-6)


def test_fusion_refuses_different_class_lists(tmp_path: Path) -> None:
    a = make_checkpoint(tmp_path / "a", ["x", "y"])
    b = make_checkpoint(tmp_path / "b", ["x", "w"])
    with pytest.raises(ModelError, match="class lists differ"):
        Predictor([load_model(a), load_model(b)])


def test_fusion_needs_one_still_scale(tmp_path: Path) -> None:
    """One reader makes the views of fused models: a clips-only model's zoomed-out stills and
    another's as they come cannot both be made, so the user picks one."""
    from xmodal.errors import ConfigError

    clips_a = load_model(make_checkpoint(tmp_path / "a", ["x", "y"], still_scale=0.8))
    clips_b = load_model(make_checkpoint(tmp_path / "b", ["x", "y"], still_scale=0.8, seed=1))
    photos = load_model(make_checkpoint(tmp_path / "c", ["x", "y"]))  # saved without one: 1
    with pytest.raises(ConfigError, match="--still-scale"):
        Predictor([clips_a, photos], workers=0)
    assert Predictor([clips_a, photos], workers=0, still_scale=1.0).reader.still_scale == 1.0
    assert Predictor([clips_a, clips_b], workers=0).reader.still_scale == 0.8
    assert Predictor(photos, workers=0).reader.still_scale == 1.0
