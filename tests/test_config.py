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
