"""Real labelled image sets that exist offline, for ``tools/bench_accuracy.py``.

* ``fashion-mnist``: 70,000 28x28 product photos, 10 classes (Zalando), from the Debian package
  ``dataset-fashion-mnist`` (``apt-get download`` + ``dpkg -x`` into the cache), a folder
  holding its four ``*-idx?-ubyte.gz`` files, or that package's .deb;
* ``digits``: scikit-learn's 1,797 8x8 handwritten digits, 10 classes;
* ``lfw``: scikit-image's LFW subset, 100 25x25 faces and 100 non-faces (background crops
  of the same photos).

Each set has a FIXED train pool and a FIXED, ordered test pool (per class; smaller test sets
are prefixes of larger ones). A training set is ``shot`` images per class drawn from the train
pool by a seed; for one seed, smaller shots are prefixes of larger ones.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                   "bag", "ankle_boot"]
FASHION_FILES = {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
                 "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
POOL_SEED = 20261122  # fixes the train and test pools; never the seed of a run


def default_cache() -> Path:
    """Where downloads, media, splits and features are kept: ``~/.cache/xmodal/bench``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xmodal" / "bench"


class DatasetUnavailable(Exception):
    """A dataset cannot be had here (package not reachable, files missing); one line, no traceback."""


@dataclass(frozen=True)
class BenchDataset:
    """Images, labels and the fixed pools of one dataset."""

    name: str
    images: np.ndarray = field(repr=False)  # uint8 (N, H, W) grey or (N, H, W, 3)
    labels: np.ndarray = field(repr=False)  # int64 (N,)
    classes: list[str]
    matte: str  # how an object separates from its background in a clip (see _bench_clips)
    train_pool: dict[int, np.ndarray] = field(repr=False)  # class -> image indices
    test_pool: dict[int, np.ndarray] = field(repr=False)  # class -> image indices, in a fixed order
    shots: tuple[int, ...]  # default training images per class
    test_stills: int  # default test stills per class
    test_clips: int  # default test clips per class
    source: str

    @property
    def version(self) -> str:
        """Content hash of images and labels (part of every cache key)."""
        digest = hashlib.sha256(self.images.tobytes())
        digest.update(self.labels.astype(np.int64).tobytes())
        return digest.hexdigest()[:16]

    def train_indices(self, shot: int, seed: int) -> dict[int, np.ndarray]:
        """``shot`` training images per class, drawn from the train pool by ``seed``."""
        picked = {}
        for c, pool in self.train_pool.items():
            if shot > len(pool):
                raise ValueError(f"{self.name}: {shot} images per class asked, the train pool of "
                                 f"{self.classes[c]} has {len(pool)}")
            rng = np.random.default_rng([seed, c, zlib.crc32(self.name.encode())])
            picked[c] = pool[rng.permutation(len(pool))[:shot]]
        return picked

    def test_indices(self, per_class: int) -> dict[int, np.ndarray]:
        """The first ``per_class`` images of each class's fixed test pool."""
        for c, pool in self.test_pool.items():
            if per_class > len(pool):
                raise ValueError(f"{self.name}: {per_class} test images per class asked, the test "
                                 f"pool of {self.classes[c]} has {len(pool)}")
        return {c: pool[:per_class] for c, pool in self.test_pool.items()}


def _pools(labels: np.ndarray, candidates: np.ndarray, sizes: tuple[int, ...],
           salt: int) -> list[dict[int, np.ndarray]]:
    """Consecutive, disjoint per-class slices of a fixed shuffle of ``candidates`` (sizes; -1 = rest)."""
    rng = np.random.default_rng([POOL_SEED, salt])
    out: list[dict[int, np.ndarray]] = [{} for _ in sizes]
    for c in np.unique(labels[candidates]):
        idx = candidates[labels[candidates] == c]
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for part, size in enumerate(sizes):
            end = len(idx) if size < 0 else start + size
            out[part][int(c)] = idx[start:end]
            start = end
    return out


# --------------------------------------------------------------------------- digits, lfw

def digits() -> BenchDataset:
    """scikit-learn's 8x8 digits (values 0-16 scaled to 0-255): 90 train / rest test per class."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0 * 255).round().astype(np.uint8)
    labels = d.target.astype(np.int64)
    train, test = _pools(labels, np.arange(len(labels)), (90, -1), salt=1)
    return BenchDataset("digits", images, labels, [f"digit_{i}" for i in range(10)], "ink", train, test,
                        shots=(10, 30), test_stills=50, test_clips=20,
                        source="sklearn.datasets.load_digits")


def lfw() -> BenchDataset:
    """scikit-image's LFW subset, faces vs non-faces: 50 train / 50 test per class."""
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)
    labels = np.array([0] * 100 + [1] * 100, dtype=np.int64)  # documented: 100 faces, then 100 non-faces
    train, test = _pools(labels, np.arange(len(labels)), (50, 50), salt=2)
    return BenchDataset("lfw", images, labels, ["face", "non_face"], "card", train, test,
                        shots=(10, 30), test_stills=50, test_clips=25,
                        source="skimage.data.lfw_subset")


# --------------------------------------------------------------------------- fashion-mnist

def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format: magic, dims, big-endian uint8 data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetUnavailable(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetUnavailable(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetUnavailable(f"{path}: {body.size} bytes of data, the header says {dims}")
    return body.reshape(dims)


def find_fashion_files(root: Path) -> dict[str, Path] | None:
    """The four Fashion-MNIST IDX files anywhere under ``root`` (gzipped or not), or None."""
    found = {}
    for key, name in FASHION_FILES.items():
        hits = sorted(root.rglob(name)) or sorted(root.rglob(name.removesuffix(".gz")))
        if not hits:
            return None
        found[key] = hits[0]
    return found


def fetch_fashion_package(cache: Path) -> Path:
    """``apt-get download`` the Debian package into ``cache`` and ``dpkg -x`` it; returns the folder."""
    target = cache / FASHION_PACKAGE
    if find_fashion_files(target):
        return target
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise DatasetUnavailable(f"fashion-mnist: {tool} not found; pass --fashion-mnist PATH "
                                     "(a folder with the four *-idx?-ubyte.gz files)")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["apt-get", "download", FASHION_PACKAGE], cwd=debs, capture_output=True,
                          text=True)
    packages = sorted(debs.glob(f"{FASHION_PACKAGE}_*.deb"))
    if done.returncode != 0 or not packages:
        last = (done.stderr.strip().splitlines() or ["no .deb written"])[-1]
        raise DatasetUnavailable(f"fashion-mnist: apt-get download {FASHION_PACKAGE} failed ({last}); "
                                 "pass --fashion-mnist PATH")
    return unpack_deb(packages[-1], cache, target)


def unpack_deb(deb: Path, cache: Path, target: Path | None = None) -> Path:
    """``dpkg -x`` a Fashion-MNIST .deb into ``target`` (default: a folder in ``cache`` named after it)."""
    target = target or cache / "unpacked" / deb.stem
    if find_fashion_files(target):
        return target
    if shutil.which("dpkg") is None:
        raise DatasetUnavailable(f"{deb}: dpkg not found to unpack it; pass the unpacked folder")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["dpkg", "-x", str(deb), str(tmp)], capture_output=True, text=True)
    if done.returncode != 0 or not find_fashion_files(tmp):
        raise DatasetUnavailable(f"{deb}: dpkg -x gave no Fashion-MNIST files "
                                 f"({done.stderr.strip()[-200:] or 'none inside'})")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def fashion_mnist(cache: Path, path: Path | None = None) -> BenchDataset:
    """Fashion-MNIST from ``path`` (a folder with its IDX files), an installed package, or apt.

    Train pool: 100 per class from the official training set; test pool: 100 per class from the
    official test set.
    """
    if path is not None:
        folder = unpack_deb(path, cache) if path.suffix == ".deb" and path.is_file() else path
        files = find_fashion_files(folder) if folder.is_dir() else None
        if files is None:
            names = ", ".join(FASHION_FILES.values())
            raise DatasetUnavailable(f"{path}: neither a folder holding the Fashion-MNIST files ({names}) "
                                     f"nor a .deb of {FASHION_PACKAGE}")
        source = str(path)
    else:
        installed = Path("/usr/share/datasets/fashion-mnist")
        files = find_fashion_files(installed) if installed.is_dir() else None
        source = str(installed)
        if files is None:
            folder = fetch_fashion_package(cache)
            files = find_fashion_files(folder)
            source = f"Debian package {FASHION_PACKAGE} (apt-get download, dpkg -x into {folder})"
    assert files is not None
    arrays = {key: read_idx(p) for key, p in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetUnavailable(f"{files[part + '_images']}: images {images.shape} do not match "
                                     f"labels {labels.shape}")
    n_train = len(arrays["train_labels"])
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    (train,) = _pools(labels, np.arange(n_train), (100,), salt=3)
    (test,) = _pools(labels, np.arange(n_train, len(labels)), (100,), salt=4)
    return BenchDataset("fashion-mnist", images, labels, FASHION_CLASSES, "silhouette", train, test,
                        shots=(10, 30), test_stills=50, test_clips=20, source=source)


DATASETS = ("fashion-mnist", "digits", "lfw")


def load(name: str, cache: Path, fashion_path: Path | None = None) -> BenchDataset:
    """One dataset by name (see ``DATASETS``); ``DatasetUnavailable`` if it cannot be had."""
    if name == "digits":
        return digits()
    if name == "lfw":
        return lfw()
    if name == "fashion-mnist":
        return fashion_mnist(cache, fashion_path)
    raise DatasetUnavailable(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
