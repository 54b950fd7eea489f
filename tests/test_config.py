from __future__ import annotations

import pytest

from xmodal.config import AUTO_VAL_MIN_PER_CLASS, VAL_SPLIT, TrainConfig
from xmodal.errors import ConfigError


@pytest.mark.parametrize(("sizes", "expected"), [
    ([10, 10, 10], 0.0),  # few-shot: every file trains
    ([AUTO_VAL_MIN_PER_CLASS, 200], VAL_SPLIT),
    ([AUTO_VAL_MIN_PER_CLASS - 1, 200], 0.0),  # the smallest class decides
    ([], 0.0),
])
def test_the_default_validation_split_holds_out_only_from_classes_big_enough(
        sizes: list[int], expected: float) -> None:
    assert TrainConfig().val_fraction(sizes) == expected


def test_a_given_validation_split_is_kept_and_multi_label_always_validates() -> None:
    assert TrainConfig(val_split=0.3).val_fraction([4, 4]) == 0.3
    assert TrainConfig(val_split=0.0).val_fraction([500, 500]) == 0.0
    # multi-label thresholds are tuned on the validation files
    assert TrainConfig(csv="x.csv", multi_label=True).val_fraction([5, 5]) == VAL_SPLIT


def test_a_validation_split_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="val_split"):
        TrainConfig(val_split=1.0).validate()
    TrainConfig(val_split=None).validate()


def test_a_folder_with_enough_files_per_class_holds_out_a_fifth_by_default(tmp_path) -> None:
    """Through the real folder scan: 50 files in each class give a stratified 20% split, 49 in
    one class give none (files are not decoded to split them)."""
    from xmodal.engine.data import load_split

    for name, count in (("a", AUTO_VAL_MIN_PER_CLASS), ("b", AUTO_VAL_MIN_PER_CLASS + 10)):
        (tmp_path / "big" / name).mkdir(parents=True)
        for i in range(count):
            (tmp_path / "big" / name / f"{i:03d}.png").write_bytes(b"not decoded here")
    split = load_split(TrainConfig(data=str(tmp_path / "big"), modality="image"))
    assert (split.val_fraction, len(split.val)) == (VAL_SPLIT, 22)  # 10 of a, 12 of b
    assert sorted({s.label for s in split.val}) == [0, 1]
    (tmp_path / "big" / "a" / "000.png").unlink()
    split = load_split(TrainConfig(data=str(tmp_path / "big"), modality="image"))
    assert (split.val_fraction, len(split.val), len(split.train)) == (0.0, 0, 2 * AUTO_VAL_MIN_PER_CLASS + 9)


@pytest.mark.parametrize(("recorded", "expected"), [
    ({}, 0.2),  # a run from before the fraction was recorded held out 0.2
    ({"val_split": None}, None),  # beside a validation folder
    ({"val_split": 0.0}, 0.0),
    ({"val_split": 0.25}, 0.25),
])
def test_export_reads_the_fraction_a_run_recorded(recorded: dict, expected: float | None) -> None:
    from xmodal.deploy.quantize import _recorded_val_split

    assert _recorded_val_split(recorded) == expected


def test_tiny_sets_train_at_least_400_steps_by_default_in_code_and_yaml() -> None:
    """400, not 200: on tools/bench_accuracy.py at 10 files per class it gained in 8 of 12
    cells of the 10-class sets and every cell at 60 (docs/accuracy.md, "2026-12-07 (10)");
    configs/default.yaml documents the same value."""
    from pathlib import Path

    import yaml

    from xmodal.config import TrainConfig

    shipped = yaml.safe_load((Path(__file__).parents[1] / "configs" / "default.yaml").read_text())
    assert TrainConfig().min_steps == shipped["min_steps"] == 400
