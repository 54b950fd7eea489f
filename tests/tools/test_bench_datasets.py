"""tools/_bench_datasets.py: real datasets with the right shapes, classes and fixed, disjoint pools."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import _bench_datasets as datasets
import numpy as np
import pytest


def _check_pools(ds: datasets.BenchDataset) -> None:
    train = np.concatenate(list(ds.train_pool.values()))
    test = np.concatenate(list(ds.test_pool.values()))
    assert not set(train) & set(test)
    for c in range(len(ds.classes)):
        assert (ds.labels[ds.train_pool[c]] == c).all()
        assert (ds.labels[ds.test_pool[c]] == c).all()
        assert len(ds.test_pool[c]) >= ds.test_stills >= ds.test_clips
        assert len(ds.train_pool[c]) >= max(ds.shots)


def test_digits() -> None:
    ds = datasets.digits()
    assert ds.images.shape == (1797, 8, 8) and ds.images.dtype == np.uint8
    assert ds.images.max() == 255 and ds.images.min() == 0
    assert ds.classes == [f"digit_{i}" for i in range(10)]
    assert sorted(set(ds.labels.tolist())) == list(range(10))
    _check_pools(ds)


def test_lfw_faces_then_non_faces() -> None:
    ds = datasets.lfw()
    assert ds.images.shape == (200, 25, 25) and ds.images.dtype == np.uint8
    assert ds.classes == ["face", "non_face"]
    assert np.bincount(ds.labels).tolist() == [100, 100]
    assert {len(p) for p in ds.train_pool.values()} == {50}
    _check_pools(ds)


def test_training_draws_are_per_class_nested_and_seeded() -> None:
    ds = datasets.digits()
    small, large = ds.train_indices(10, seed=1), ds.train_indices(60, seed=1)
    other = ds.train_indices(10, seed=2)
    for c in range(10):
        assert len(small[c]) == 10 and len(large[c]) == 60
        assert (ds.labels[large[c]] == c).all()
        assert set(large[c]) <= set(ds.train_pool[c])
        assert (large[c][:10] == small[c]).all()  # a seed's smaller shot is a prefix of its larger
    assert any(set(small[c]) != set(other[c]) for c in range(10))
    assert all((a == b).all() for a, b in zip(small.values(), ds.train_indices(10, seed=1).values(),
                                               strict=True))
    with pytest.raises(ValueError, match="train pool"):
        ds.train_indices(91, seed=0)
    assert all((ds.test_indices(5)[c] == ds.test_pool[c][:5]).all() for c in range(10))


def test_pools_do_not_depend_on_the_run() -> None:
    assert all((a == b).all() for a, b in zip(datasets.digits().test_pool.values(),
                                               datasets.digits().test_pool.values(), strict=True))


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_refusals(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    assert (datasets.read_idx(tmp_path / "x-idx3-ubyte.gz") == images).all()
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + b"\x00" * 8))
    with pytest.raises(datasets.DatasetUnavailable, match="unsigned-byte"):
        datasets.read_idx(tmp_path / "bad.gz")
    short = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x01\x02"
    (tmp_path / "short.gz").write_bytes(gzip.compress(short))
    with pytest.raises(datasets.DatasetUnavailable, match="header says"):
        datasets.read_idx(tmp_path / "short.gz")


def _write_fashion_files(folder: Path) -> None:
    """Fashion-MNIST's four files, with random pixels: 1,200 training and 1,100 test images."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", 1200), ("t10k", 1100)):
        _write_idx(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_fashion_mnist_from_a_folder_of_idx_files(tmp_path: Path) -> None:
    _write_fashion_files(tmp_path)
    ds = datasets.fashion_mnist(tmp_path / "cache", tmp_path)
    assert ds.images.shape == (2300, 28, 28) and len(ds.classes) == 10
    assert all((i < 1200).all() for i in ds.train_pool.values())
    assert all((i >= 1200).all() for i in ds.test_pool.values())
    _check_pools(ds)
    with pytest.raises(datasets.DatasetUnavailable, match="neither a folder holding"):
        datasets.fashion_mnist(tmp_path / "cache", tmp_path / "cache")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a .deb")
def test_fashion_mnist_from_a_deb_file(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write_fashion_files(root / "usr" / "share" / "datasets" / "fashion-mnist")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text("Package: dataset-fashion-mnist\nVersion: 0.1\n"
                                             "Architecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    deb = tmp_path / "dataset-fashion-mnist_0.1_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
    ds = datasets.fashion_mnist(tmp_path / "cache", deb)
    assert ds.images.shape == (2300, 28, 28)
    assert (tmp_path / "cache" / "unpacked" / deb.stem).is_dir()
    empty = tmp_path / "empty.deb"
    empty.write_bytes(b"not a deb")
    with pytest.raises(datasets.DatasetUnavailable, match="dpkg -x gave no Fashion-MNIST files"):
        datasets.fashion_mnist(tmp_path / "cache", empty)


def test_fashion_mnist_from_the_debian_package() -> None:
    """The real thing (apt-get download + dpkg -x, cached); skipped where apt cannot reach Debian."""
    try:
        ds = datasets.load("fashion-mnist", datasets.default_cache())
    except datasets.DatasetUnavailable as exc:
        pytest.skip(f"Fashion-MNIST not available here: {exc}")
    assert ds.images.shape == (70000, 28, 28) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [7000] * 10
    assert ds.classes[0] == "tshirt_top" and ds.classes[9] == "ankle_boot"
    _check_pools(ds)
