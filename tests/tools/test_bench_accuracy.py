"""tools/bench_accuracy.py: options, recipes, the cost estimate, and one tiny real run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import _bench_recipes as recipes
import bench_accuracy as bench
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_recipe_lists_split_between_rows_not_between_options() -> None:
    specs = bench.split_recipes("plain,xmodal:backbone_lr_mult=1.0,augment=none,probe-knn:k=3,"
                                "xmodal-defaults")
    assert specs == ["plain", "xmodal:backbone_lr_mult=1.0,augment=none", "probe-knn:k=3",
                     "xmodal-defaults"]


def test_recipes_parse_typed_options_and_refuse_bad_ones() -> None:
    plain = recipes.parse_recipe("plain:lr=3e-4,batch_size=16,zoom_out=0.5")
    assert plain.opts == {"lr": 3e-4, "batch_size": 16, "weight_decay": 0.01, "zoom_out": 0.5}
    xm = recipes.parse_recipe("xmodal:backbone_lr_mult=1,augment=none,grad_clip=null")
    assert xm.overrides == {"backbone_lr_mult": 1, "augment": "none", "grad_clip": None}
    cfg = xm.config(recipes.Settings(96, 3, 2), Path("d"), "mixed", Path("o"), 4)
    assert (cfg.backbone_lr_mult, cfg.augment, cfg.grad_clip) == (1.0, "none", None)
    assert (cfg.input_size, cfg.frames, cfg.epochs, cfg.modality, cfg.seed) == (96, 3, 2, "mixed", 4)
    defaults = recipes.parse_recipe("xmodal-defaults").config(recipes.Settings(), Path("d"), "clips",
                                                              Path("o"), 0)
    assert (defaults.lr, defaults.augment, defaults.val_split) == (1e-3, "cross", None)
    held_out = recipes.parse_recipe("xmodal:val_split=0.2").config(recipes.Settings(), Path("d"),
                                                                   "clips", Path("o"), 0)
    assert held_out.val_split == 0.2
    for bad, reason in [("xmodal:learning_rate=1", "unknown config key"),
                        ("xmodal:augment=heavy", "augment must be one of"),
                        ("xmodal:seed=3", "set by the bench"),
                        ("xmodal", "give overrides"),
                        ("xmodal-defaults:lr=1", "takes no options"),
                        ("plain:lr=fast", "lr must be a float"),
                        ("plain:momentum=0.9", "unknown option"),
                        ("plain:zoom_out=0", "smallest scale"),
                        ("probe-knn:k", "KEY=VALUE"),
                        ("resnet-magic", "unknown recipe")]:
        with pytest.raises(recipes.RecipeError, match=reason):
            recipes.parse_recipe(bad)


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    results = [{"recipe": "plain", "dataset": "d", "shot": 10, "train": "stills", "seed": s,
                "accuracy": {"stills": a, "clips": a / 2}} for s, a in enumerate([0.5, 0.7, 0.9])]
    results.append({"recipe": "plain", "dataset": "d", "shot": 10, "train": "clips", "seed": 0,
                    "error": "RuntimeError: boom"})
    summary = {(s["train"], s["test"]): s for s in bench.summarise(results)}
    assert set(summary) == {("stills", "stills"), ("stills", "clips")}
    assert summary["stills", "stills"]["mean"] == pytest.approx(0.7)
    assert summary["stills", "stills"]["std"] == pytest.approx(0.2)
    assert summary["stills", "clips"]["mean"] == pytest.approx(0.35)
    assert summary["stills", "stills"]["seeds"] == 3


def test_estimate_counts_the_frames_of_the_plan(tmp_path: Path) -> None:
    args = bench.parse_args(["--datasets", "lfw", "--shots", "10", "--seeds", "0,1", "--recipes",
                             "plain,probe-knn", "--directions", "clips-clips", "--cache", str(tmp_path)])
    plans, seeds, directions, rows, settings = bench.resolve(args)
    jobs = bench.make_jobs(plans, seeds, directions)
    assert [(j.train, j.tests, j.seed) for j in jobs] == [("clips", ("clips",), 0), ("clips", ("clips",), 1)]
    assert all(len(j.items) == 20 and {i.kind for i in j.items} == {"clip"} for j in jobs)
    cost = bench.estimate(jobs, rows, settings, (100.0, 400.0), workers=1)
    # plain: 20 clips x 3 frames x 5 epochs per seed; tests: 50 clips x 3 frames per seed.
    assert cost["training"] == pytest.approx(2 * 20 * 3 * 5 / 100.0)
    assert cost["inference"] == pytest.approx(2 * 50 * 3 / 400.0)
    # features: each distinct clip once (the seeds' draws overlap in a pool of 50 per class)
    distinct = {i.key for j in jobs for i in j.items} | {i.key for i in plans[0].test_items()["clips"]}
    assert cost["features"] == pytest.approx(len(distinct) * 3 / 400.0)
    assert cost["making files"] == pytest.approx(len(distinct) * bench.CLIP_S)


def test_mixed_training_sets_are_half_stills_half_clips(tmp_path: Path) -> None:
    args = bench.parse_args(["--datasets", "digits", "--shots", "10", "--cache", str(tmp_path)])
    plans, *_ = bench.resolve(args)
    items = bench.train_items(plans[0], 10, 0, "mixed")
    assert len(items) == 100
    for c in range(10):
        kinds = [i.kind for i in items if i.label == c]
        assert kinds == ["still"] * 5 + ["clip"] * 5
    assert {i.key.split("/")[1] for i in items} == {
        i.key.split("/")[1] for i in bench.train_items(plans[0], 10, 0, "stills")}


def test_adapt_jobs_get_their_own_images_in_the_other_modality_never_test_files(tmp_path: Path) -> None:
    args = bench.parse_args(["--datasets", "lfw", "--shots", "10", "--recipes", "xmodal-adapt:rounds=1",
                             "--directions", "stills-clips,clips-stills,mixed-both",
                             "--cache", str(tmp_path)])
    plans, seeds, directions, rows, settings = bench.resolve(args)
    assert rows[0].opts == {"rounds": 1, "threshold": 0.7, "batchnorm": "none"} and rows[0].uses_unlabeled
    jobs = {j.train: j for j in bench.make_jobs(plans, seeds, directions, unlabeled=True)}
    def image(item: recipes.Item) -> str:  # keys are "<kind>/<image index>"
        return item.key.split("/")[1]

    tests = {image(i) for t in ("stills", "clips") for i in plans[0].test_items()[t]}
    for train, other in (("stills", "clip"), ("clips", "still")):
        job = jobs[train]
        assert {i.kind for i in job.unlabeled} == {other}
        assert sorted(map(image, job.unlabeled)) == sorted(map(image, job.items))
        assert not tests & set(map(image, job.unlabeled))
    assert jobs["mixed"].unlabeled == []
    assert all(j.unlabeled == [] for j in bench.make_jobs(plans, seeds, directions))
    # The estimate counts the adapt rounds: more than the defaults' run on the same task.
    plain_rows = [recipes.parse_recipe("xmodal-defaults")]
    stills_job = bench.make_jobs(plans, seeds, ["stills-clips"], unlabeled=True)
    assert (bench.estimate(stills_job, rows, settings, (100.0, 400.0), 1)["training"]
            > bench.estimate(stills_job, plain_rows, settings, (100.0, 400.0), 1)["training"])
    assert recipes.parse_recipe("xmodal-adapt:min_steps=0,rounds=3").overrides == {"min_steps": 0}
    bn_only = recipes.parse_recipe("xmodal-adapt:rounds=0,batchnorm=target")
    assert bn_only.opts == {"rounds": 0, "threshold": 0.7, "batchnorm": "target"}
    # BatchNorm statistics alone cost one pass over the unlabelled files, no training.
    assert (bench.estimate(stills_job, [bn_only], settings, (100.0, 400.0), 1)["training"]
            == bench.estimate(stills_job, plain_rows, settings, (100.0, 400.0), 1)["training"])
    # The spelling of the first results (commit 8c71c1e) of "target" still reads the same.
    assert recipes.parse_recipe("xmodal-adapt:rounds=0,batchnorm=true").opts["batchnorm"] == "target"
    assert recipes.parse_recipe("xmodal-adapt:rounds=0,batchnorm=mixed").opts["batchnorm"] == "mixed"
    for bad in ("xmodal-adapt:rounds=0", "xmodal-adapt:threshold=1.5", "xmodal-adapt:rounds=0,batchnorm=none",
                "xmodal-adapt:rounds=0,batchnorm=both",
                "xmodal-adapt:rounds=0,batchnorm=maybe", "xmodal-adapt:learning_rate=1",
                "xmodal-adapt:seed=1"):
        with pytest.raises(recipes.RecipeError):
            recipes.parse_recipe(bad)


@pytest.mark.parametrize("argv, message", [
    (["--recipes", "plain,nope"], "unknown recipe 'nope'"),
    (["--recipes", "xmodal:nonsense=1"], "unknown config key"),
    (["--directions", "stills-sideways"], "unknown direction"),
    (["--datasets", "imagenet"], "unknown dataset"),
    (["--seeds", "a,b"], "--seeds takes integers"),
    (["--datasets", "lfw", "--shots", "500"], "nothing to run"),
])
def test_bad_options_give_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main([*argv, "--estimate", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bench_accuracy: error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.slow
def test_tiny_run_end_to_end_writes_the_table_and_the_json(tmp_path: Path) -> None:
    """Digits, 2 images per class, 1 epoch, 48 px, T=2: plain, xmodal (its defaults but
    min_steps, which would stretch 2 steps an epoch to 200) and the same + one adapt round on
    the training images' clips, real files."""
    out = tmp_path / "result.json"
    command = [sys.executable, str(ROOT / "tools" / "bench_accuracy.py"), "--datasets", "digits",
               "--shots", "2", "--seeds", "0", "--epochs", "1", "--input-size", "48", "--frames", "2",
               "--test-stills", "2", "--test-clips", "1", "--directions", "stills-clips,mixed-both",
               "--recipes", "plain,xmodal:min_steps=0,xmodal-adapt:min_steps=0,rounds=1,threshold=0.1",
               "--cache", str(tmp_path / "cache"), "--out", str(out),
               "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "estimate:" in done.stdout
    table = done.stdout[done.stdout.index("digits, 2 per class"):]
    header = next(line for line in table.splitlines() if line.startswith("| recipe | s→"))
    assert header == "| recipe | s→c | m→s | m→c |"
    assert "| recipe | wall time | CPU time | of which training, CPU |" in table
    assert any(line.startswith("| plain | ") for line in table.splitlines())
    assert any(line.startswith("| xmodal:min_steps=0 | ") for line in table.splitlines())

    report = json.loads(out.read_text())
    assert {"command", "date", "git_commit", "settings", "datasets", "rows", "summary", "results",
            "wall_s", "estimate_s"} <= set(report)
    assert "bench_accuracy.py" in report["command"]
    adapt = "xmodal-adapt:min_steps=0,rounds=1,threshold=0.1"
    assert set(report["rows"]) == {"plain", "xmodal:min_steps=0", adapt}
    assert all(row["cpu_s"] > row["train_cpu_s"] > 0 for row in report["rows"].values())
    runs = {(r["recipe"], r["train"]): r for r in report["results"]}
    assert set(runs) == {(r, t) for r in ("plain", "xmodal:min_steps=0", adapt) for t in ("stills", "mixed")}
    # Adapting costs a second training (on the training stills + their pseudo-labelled clips).
    adapted, base = runs[adapt, "stills"], runs["xmodal:min_steps=0", "stills"]
    assert adapted["train_cpu_seconds"] > base["train_cpu_seconds"]
    unlabeled = next((tmp_path / "cache" / "splits").iterdir()) / "unlabeled-clips-shot2-seed0"
    assert sorted(p.suffix for p in unlabeled.iterdir()) == [".mp4"] * 20  # flat: no class folders
    for run in runs.values():
        assert "error" not in run, run
        assert set(run["accuracy"]) == ({"clips"} if run["train"] == "stills" else {"stills", "clips"})
        assert all(0.0 <= a <= 1.0 for a in run["accuracy"].values())
        assert run["n_test"] == ({"clips": 10} if run["train"] == "stills" else {"stills": 20, "clips": 10})
        assert run["seconds"] > 0 and run["cpu_seconds"] > 0  # training is not free of CPU
        # Training is timed alone: part of the row, which also scores the test sets.
        assert 0 < run["train_cpu_seconds"] <= run["cpu_seconds"]  # both rounded to 0.1 s
        assert 0 < run["train_seconds"] <= run["seconds"]
    # The splits are real class folders of real files, as a user's would be.
    splits = next((tmp_path / "cache" / "splits").iterdir())
    mixed = sorted(p.name for p in (splits / "train-mixed-shot2-seed0" / "digit_3").iterdir())
    assert len(mixed) == 2 and mixed[0].startswith("clip_") and mixed[0].endswith(".mp4")
    assert mixed[1].startswith("still_") and mixed[1].endswith(".png")
    assert len(list((splits / "test-clips-10").rglob("*.mp4"))) == 10
