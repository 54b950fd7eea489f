from __future__ import annotations

import importlib.util
import pickle
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.utils import write_image, write_video
from xmodal.data.datasets import (
    ClipDataset,
    KindBatchSampler,
    Sample,
    read_csv,
    scan_folder,
    stratified_split,
)
from xmodal.data.transforms import eval_transform
from xmodal.errors import DatasetError, ImageDecodeError, InputError, VideoDecodeError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of images and videos, with nesting, odd case, hidden and foreign files."""
    root = tmp_path_factory.mktemp("tree") / "data"
    write_image(root / "cat" / "b.jpg")
    write_image(root / "cat" / "a.PNG")
    write_video(root / "cat" / "sub" / "c.mp4", 10)
    write_image(root / "cat" / ".hidden.jpg")
    write_video(root / "cat" / ".cache" / "x.mp4", 4)
    (root / "cat" / "notes.txt").write_text("not media")
    write_video(root / "dog" / "v1.mp4", 12, size=(48, 32))
    write_video(root / "dog" / "v0.MP4", 6)
    write_image(root / "dog" / "z.png", size=(20, 24))
    (root / ".git").mkdir()
    return root


def _names(samples: list[Sample], root: Path) -> list[str]:
    return [s.path.relative_to(root).as_posix() for s in samples]


# --- scan_folder ------------------------------------------------------------------------------

def test_scan_folder_mixed_sorted_and_labelled(tree: Path) -> None:
    samples, classes = scan_folder(tree, "mixed")
    assert classes == ["cat", "dog"]
    assert _names(samples, tree) == ["cat/a.PNG", "cat/b.jpg", "cat/sub/c.mp4",
                                     "dog/v0.MP4", "dog/v1.mp4", "dog/z.png"]
    assert [s.label for s in samples] == [0, 0, 0, 1, 1, 1]
    assert [s.kind for s in samples] == ["image", "image", "video", "video", "video", "image"]
    assert scan_folder(str(tree), "mixed") == (samples, classes)


@pytest.mark.parametrize("modality,expected", [
    ("image", ["cat/a.PNG", "cat/b.jpg", "dog/z.png"]),
    ("video", ["cat/sub/c.mp4", "dog/v0.MP4", "dog/v1.mp4"]),
])
def test_scan_folder_filters_by_modality(tree: Path, modality: str, expected: list[str]) -> None:
    samples, classes = scan_folder(tree, modality)
    assert _names(samples, tree) == expected
    assert {s.kind for s in samples} == {modality} and classes == ["cat", "dog"]


def test_scan_folder_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope: folder does not exist"):
        scan_folder(tmp_path / "nope", "video")


def test_scan_folder_root_is_a_file(tmp_path: Path) -> None:
    file = write_image(tmp_path / "x.jpg")
    with pytest.raises(DatasetError, match="x.jpg: not a folder"):
        scan_folder(file, "image")


def test_scan_folder_without_class_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "loose.jpg")
    with pytest.raises(DatasetError, match="no class folders.*1 media files") as info:
        scan_folder(tmp_path, "image")
    assert info.value.path == str(tmp_path)


def test_scan_folder_nothing_usable_names_root_and_modality(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "x.jpg")
    (tmp_path / "b").mkdir()
    with pytest.raises(DatasetError) as info:
        scan_folder(tmp_path, "video")
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: no video files (extensions .mp4, .avi")
    assert "in any class folder" in message and "\n" not in message


def test_scan_folder_class_without_usable_files_names_that_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "x.jpg")
    write_video(tmp_path / "b" / "y.mp4", 4)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "readme.txt").write_text("")
    with pytest.raises(DatasetError, match="only 1 files with other extensions") as info:
        scan_folder(tmp_path, "mixed")
    assert info.value.path == str(tmp_path / "c")
    with pytest.raises(DatasetError, match="do not match modality 'video'") as info:
        scan_folder(tmp_path, "video")
    assert info.value.path == str(tmp_path / "a")


# --- read_csv ---------------------------------------------------------------------------------

@pytest.fixture()
def csv_files(tmp_path: Path) -> Path:
    write_video(tmp_path / "media" / "clip, one.mp4", 6)
    write_image(tmp_path / "media" / "pic.jpg")
    write_image(tmp_path / "media" / "pic2.png")
    return tmp_path


def test_read_csv_with_header_bom_blanks_and_quotes(csv_files: Path) -> None:
    text = '\ufeffpath,label\n\n"media/clip, one.mp4",run\nmedia/pic.jpg , jump\n\n  \nmedia/pic2.png,run\n'
    (csv_files / "list.csv").write_text(text, encoding="utf-8")
    samples, classes = read_csv(csv_files / "list.csv", "mixed")
    assert classes == ["jump", "run"]
    assert samples == [Sample(csv_files / "media" / "clip, one.mp4", 1, "video"),
                       Sample(csv_files / "media" / "pic.jpg", 0, "image"),
                       Sample(csv_files / "media" / "pic2.png", 1, "image")]


def test_read_csv_without_header_absolute_paths_and_given_classes(csv_files: Path) -> None:
    absolute = csv_files / "media" / "pic.jpg"
    (csv_files / "sub").mkdir()
    (csv_files / "sub" / "list.csv").write_text(f"{absolute},b\n../media/pic2.png,a\n")
    samples, classes = read_csv(csv_files / "sub" / "list.csv", "image", classes=["z", "a", "b"])
    assert classes == ["z", "a", "b"]
    expected = [(absolute, 2), (csv_files / "media" / "pic2.png", 1)]
    assert [(s.path.resolve(), s.label) for s in samples] == expected


def test_read_csv_filters_modality(csv_files: Path) -> None:
    (csv_files / "list.csv").write_text('"media/clip, one.mp4",run\nmedia/pic.jpg,jump\n')
    samples, classes = read_csv(csv_files / "list.csv", "video")
    assert [s.kind for s in samples] == ["video"] and classes == ["run"]


def test_read_csv_unknown_label_names_the_line(csv_files: Path) -> None:
    (csv_files / "list.csv").write_text("path,label\nmedia/pic.jpg,run\n\nmedia/pic2.png,swim\n")
    match = r"list.csv:4: label 'swim' is not one of the classes \(run, jump\)"
    with pytest.raises(DatasetError, match=match):
        read_csv(csv_files / "list.csv", "image", classes=["run", "jump"])


def test_read_csv_missing_files_are_listed(csv_files: Path) -> None:
    rows = "".join(f"media/gone{i}.jpg,a\n" for i in range(5))
    (csv_files / "list.csv").write_text("media/pic.jpg,a\n" + rows)
    match = r"5 listed files do not exist: .*gone0.jpg \(line 2\).*and 2 more"
    with pytest.raises(DatasetError, match=match):
        read_csv(csv_files / "list.csv", "image")


@pytest.mark.parametrize("text,match", [
    ("media/pic.jpg,a,extra\n", r"list.csv:1: expected 2 columns"),
    ("media/pic.jpg,a\nmedia/notes.txt,a\n", r"list.csv:2: notes.txt is neither an image nor a video"),
    ("", "no rows"),
])
def test_read_csv_bad_rows(csv_files: Path, text: str, match: str) -> None:
    (csv_files / "list.csv").write_text(text)
    with pytest.raises(DatasetError, match=match):
        read_csv(csv_files / "list.csv", "image")


def test_read_csv_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_csv(tmp_path / "none.csv", "video")


# --- stratified_split -------------------------------------------------------------------------

def _synthetic(counts: list[int], kinds: str = "image") -> list[Sample]:
    samples = []
    for label, n in enumerate(counts):
        for i in range(n):
            kind = kinds if kinds != "alternate" else ("image", "video")[i % 2]
            samples.append(Sample(Path(f"c{label}/{i}"), label, kind))  # type: ignore[arg-type]
    return samples


@pytest.mark.parametrize("fraction", [0.01, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stratified_split_properties(fraction: float, seed: int) -> None:
    samples = _synthetic([1, 2, 3, 10, 25])
    train, val = stratified_split(samples, fraction, seed)
    assert sorted(map(str, [s.path for s in train + val])) == sorted(map(str, [s.path for s in samples]))
    assert not set(train) & set(val)
    assert train == [s for s in samples if s in train]  # input order kept
    per_train, per_val = Counter(s.label for s in train), Counter(s.label for s in val)
    assert per_train[0] == 1 and per_val[0] == 0  # a single file can only train
    for label, n in enumerate([1, 2, 3, 10, 25]):
        if n >= 2:
            assert per_train[label] >= 1 and per_val[label] >= 1
            assert per_val[label] == min(max(round(n * fraction), 1), n - 1)
    assert stratified_split(samples, fraction, seed) == (train, val)


def test_stratified_split_seed_changes_split_and_zero_keeps_all() -> None:
    samples = _synthetic([20, 20])
    assert stratified_split(samples, 0.3, 0)[1] != stratified_split(samples, 0.3, 1)[1]
    assert stratified_split(samples, 0.0, 0) == (samples, [])
    with pytest.raises(ValueError):
        stratified_split(samples, 1.0, 0)


def test_stratified_split_spreads_kinds() -> None:
    samples = _synthetic([10, 10], kinds="alternate")
    _, val = stratified_split(samples, 0.4, 3)
    assert Counter((s.label, s.kind) for s in val) == {(0, "image"): 2, (0, "video"): 2,
                                                       (1, "image"): 2, (1, "video"): 2}


# --- ClipDataset ------------------------------------------------------------------------------

def test_clip_dataset_shapes_and_labels(tree: Path) -> None:
    samples, _ = scan_folder(tree, "mixed")
    dataset = ClipDataset(samples, 4, eval_transform(32, 36), train=False)
    assert len(dataset) == 6 and dataset.kinds == [s.kind for s in samples]
    for i, sample in enumerate(samples):
        clip, label = dataset[i]
        assert clip.dtype == torch.uint8 and label == sample.label
        assert clip.shape == ((1 if sample.kind == "image" else 4), 3, 32, 32)


def test_clip_dataset_without_transform_keeps_size(tree: Path) -> None:
    samples, _ = scan_folder(tree, "video")
    clip, _ = ClipDataset(samples, 3, None, train=True, backend="pyav")[2]  # dog/v1.mp4, 48x32
    assert clip.shape == (3, 3, 32, 48)


def test_clip_dataset_train_sampling_follows_torch_seed(tree: Path) -> None:
    samples, _ = scan_folder(tree, "video")
    dataset = ClipDataset(samples, 3, None, train=True)
    torch.manual_seed(5)
    first = [dataset[2][0] for _ in range(4)]
    torch.manual_seed(5)
    again = [dataset[2][0] for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert any(not torch.equal(first[0], c) for c in first[1:])  # frames vary from draw to draw


def test_clip_dataset_short_side_keeps_the_evaluation_pixels(tree: Path) -> None:
    """Validation shrinks frames while decoding; the clip must equal the transform's own resize."""
    samples, _ = scan_folder(tree, "video")
    clips = [ClipDataset(samples, 3, eval_transform(24, 28), train=False, short_side=side)
             for side in (None, 28)]
    for index in range(len(samples)):  # 64x48 and 48x32 videos: both shrunk
        torch.testing.assert_close(clips[1][index][0], clips[0][index][0], rtol=0, atol=0)


def test_validation_loader_shrinks_while_decoding_training_does_not(tree: Path) -> None:
    from xmodal.config import TrainConfig
    from xmodal.engine.data import make_loader

    samples, _ = scan_folder(tree, "video")
    cfg = TrainConfig(data=str(tree), workers=0, frames=2, batch_size=2)
    val = make_loader(samples, cfg, train=False, input_size=24, resize_size=28)
    train = make_loader(samples, cfg, train=True, input_size=24, resize_size=28)
    assert val.dataset.dataset.short_side == 28  # a full-size random crop for training
    assert train.dataset.dataset.short_side is None
    clips, labels, bad = next(iter(val))
    assert clips.shape == (2, 2, 3, 24, 24) and not bad


def test_clip_dataset_pickles_without_decoders(tree: Path) -> None:
    samples, _ = scan_folder(tree, "mixed")
    dataset = pickle.loads(pickle.dumps(ClipDataset(samples, 2, eval_transform(32), train=False)))
    assert dataset[2][0].shape == (2, 3, 32, 32)


def test_clip_dataset_bad_files_raise_input_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    samples = [Sample(tmp_path / "bad.mp4", 0, "video"), Sample(tmp_path / "bad.jpg", 0, "image")]
    dataset = ClipDataset(samples, 2, None, train=False)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        dataset[0]
    with pytest.raises(ImageDecodeError, match="bad.jpg"):
        dataset[1]
    assert issubclass(VideoDecodeError, InputError)


def test_dataloader_batches_have_constant_t(tree: Path) -> None:
    samples, _ = scan_folder(tree, "mixed")
    dataset = ClipDataset(samples, 3, eval_transform(24), train=True)
    sampler = KindBatchSampler(dataset.kinds, 2, shuffle=True, generator=torch.Generator().manual_seed(0))
    shapes = set()
    for clips, labels in DataLoader(dataset, batch_sampler=sampler, num_workers=2):
        assert clips.dtype == torch.uint8 and labels.dtype == torch.int64
        shapes.add(tuple(clips.shape[1:]))
    assert shapes == {(1, 3, 24, 24), (3, 3, 24, 24)}


# --- KindBatchSampler -------------------------------------------------------------------------

KINDS = ["image"] * 7 + ["video"] * 12 + ["image"] * 4


def _check_homogeneous(batches: list[list[int]], kinds: list[str]) -> None:
    for batch in batches:
        assert len({kinds[i] for i in batch}) == 1


@pytest.mark.parametrize("batch_size", [1, 3, 5, 50])
@pytest.mark.parametrize("shuffle", [True, False])
def test_kind_batch_sampler_covers_each_index_once(batch_size: int, shuffle: bool) -> None:
    sampler = KindBatchSampler(KINDS, batch_size, shuffle=shuffle)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        _check_homogeneous(batches, KINDS)
        assert sorted(i for b in batches for i in b) == list(range(len(KINDS)))
        assert len(batches) == len(sampler)
        assert all(len(b) <= batch_size for b in batches)


def test_kind_batch_sampler_unshuffled_keeps_order() -> None:
    batches = list(KindBatchSampler(KINDS, 4, shuffle=False))
    assert batches[0] == [0, 1, 2, 3] and [i for b in batches for i in b if KINDS[i] == "video"] == \
        list(range(7, 19))


def test_kind_batch_sampler_drop_last() -> None:
    sampler = KindBatchSampler(KINDS, 5, shuffle=True, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 + 2  # 11 images -> 2, 12 videos -> 2
    assert all(len(b) == 5 for b in batches)
    _check_homogeneous(batches, KINDS)


def test_kind_batch_sampler_epoch_order_is_reproducible() -> None:
    def order(epoch: int, seed: int) -> list[list[int]]:
        sampler = KindBatchSampler(KINDS, 3, shuffle=True, generator=torch.Generator().manual_seed(seed))
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(2, 0) == order(2, 0)  # a resumed run sees the same epoch 2
    assert order(2, 0) != order(3, 0) and order(2, 0) != order(2, 1)
    kinds = [KINDS[b[0]] for b in order(0, 0)]
    assert kinds != sorted(kinds)  # image and video batches are interleaved
    sampler = KindBatchSampler(KINDS, 3, shuffle=True)
    assert list(sampler) != list(sampler)  # without set_epoch, each pass still reshuffles


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.8])
def test_kind_batch_sampler_image_ratio(ratio: float) -> None:
    kinds = ["image"] * 3 + ["video"] * 40
    sampler = KindBatchSampler(kinds, 4, shuffle=True, image_ratio=ratio)
    batches = list(sampler)
    _check_homogeneous(batches, kinds)
    assert len(batches) == len(sampler) == 1 + 10
    images = [b for b in batches if kinds[b[0]] == "image"]
    assert len(images) == round(ratio * 11)
    assert all(len(b) == 4 for b in batches)
    assert set(i for b in images for i in b) == {0, 1, 2}


def test_kind_batch_sampler_single_kind_and_empty() -> None:
    assert len(list(KindBatchSampler(["video"] * 5, 2, shuffle=True, image_ratio=0.5))) == 3
    empty = KindBatchSampler([], 2, shuffle=True)
    assert list(empty) == [] and len(empty) == 0
    with pytest.raises(ValueError):
        KindBatchSampler(["audio"], 2, shuffle=True)


# --- tools/make_samples.py --------------------------------------------------------------------

def _load_make_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "tools" / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_samples"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _decoded(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_make_samples_is_deterministic(tmp_path: Path) -> None:
    make_samples = _load_make_samples()
    args = ["--videos-per-class", "2", "--images-per-class", "2"]
    assert make_samples.main(["--out", str(tmp_path / "a"), *args]) == 0
    assert make_samples.main(["--out", str(tmp_path / "b"), *args]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 * 4 + 2 + 1
    for rel in files:
        a, b = tmp_path / "a" / rel, tmp_path / "b" / rel
        if rel.suffix == ".mp4":
            assert np.array_equal(_decoded(a), _decoded(b)), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel
    samples, classes = scan_folder(tmp_path / "a" / "train", "mixed")
    assert len(classes) == 3 and Counter(s.kind for s in samples) == {"image": 6, "video": 6}
    # Rerunning over its own output replaces it; a smaller run leaves no stale files behind.
    make_samples.main(["--out", str(tmp_path / "a"), "--videos-per-class", "1", "--images-per-class", "0"])
    assert len(scan_folder(tmp_path / "a" / "train", "mixed")[0]) == 3


def test_make_samples_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(SystemExit, match="not made by make_samples"):
        _load_make_samples().main(["--out", str(tmp_path), "--videos-per-class", "1"])
