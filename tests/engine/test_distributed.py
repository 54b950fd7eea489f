"""torchrun with the gloo backend on CPU: two processes, as CI can run them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.utils import write_video
from xmodal.engine.label import find_files, label_files, part_path
from xmodal.engine.predict import Predictor, load_model

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _ddp_script(tiny_dataset: Path, run_dir: Path, out_dir: Path) -> str:
    return textwrap.dedent(f"""
        import hashlib, json, logging, os
        logging.basicConfig(level=logging.INFO)
        import xmodal.engine.train as train
        from xmodal.config import load_config

        cfg = load_config(None, data={str(tiny_dataset)!r}, modality="mixed", frames=2, epochs=2,
                          batch_size=2, workers=0, out={str(run_dir)!r}, val_split=0.34,
                          warmup_epochs=0.0, device="cpu", input_size=96, min_steps=0)
        # Each rank reports its own live weights, not only what rank 0 saved.
        model_holder = {{}}
        original_apply = train.apply_freezing
        def capture_model(model, cfg, epoch, *frozen):
            model_holder["model"] = model
            return original_apply(model, cfg, epoch, *frozen)
        train.apply_freezing = capture_model
        result = train.fit(cfg)
        digest = hashlib.sha256()
        state = model_holder["model"].state_dict()
        for key in sorted(state):
            digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
        rank = os.environ["RANK"]
        with open(os.path.join({str(out_dir)!r}, f"rank{{rank}}.json"), "w") as fh:
            json.dump({{"sha": digest.hexdigest(), "history": result.history}}, fh)
    """)


def test_ddp_training_final_weights_equal_on_both_ranks(tiny_dataset: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(_ddp_script(tiny_dataset, tmp_path / "run", tmp_path))
    proc = _run([*TORCHRUN, str(script)], tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["sha"] == ranks[1]["sha"]
    # Metrics are reduced across ranks: both see the same numbers.
    def metrics(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert metrics(ranks[0]["history"]) == metrics(ranks[1]["history"])
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 only
    assert "effective batch size 4 = 2 x 2 ranks" in proc.stderr + proc.stdout


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ddp") / "clips"
    for i in range(9):
        write_video(folder / f"c{i}.mp4", 6 + i, size=(64, 48), fps=8)
    (folder / "zz_bad.mp4").write_bytes(b"junk" * 64)
    return folder


def _single_process_labels(model: Path, folder: Path, out: Path) -> list[Path]:
    """The reference run, with one intra-op thread like each torchrun rank (torchrun sets
    OMP_NUM_THREADS=1): oneDNN rounds the last digits differently with other thread counts."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        files = find_files([folder]).files
        label_files(Predictor(load_model(model), workers=0), files, out)
    finally:
        torch.set_num_threads(threads)
    return files


def _label_cmd(model: Path, folder: Path, out: Path) -> list[str]:
    return [*TORCHRUN, "-m", "xmodal", "label", str(folder), "--model", str(model), "--out", str(out),
            "--quiet", "--workers", "0", "--device", "cpu", "--engine", "torch"]  # as the reference


def test_sharded_labelling_equals_single_process(three_class_checkpoint: Path, clip_folder: Path,
                                                 tmp_path: Path) -> None:
    single = tmp_path / "single.jsonl"
    _single_process_labels(three_class_checkpoint, clip_folder, single)
    merged = tmp_path / "merged.jsonl"
    proc = subprocess.run(_label_cmd(three_class_checkpoint, clip_folder, merged), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]  # one bad file, reported
    assert merged.read_text() == single.read_text()
    assert not list(tmp_path.glob("merged.part*"))


def test_sharded_run_interrupted_on_one_rank_resumes(three_class_checkpoint: Path, clip_folder: Path,
                                                     tmp_path: Path) -> None:
    reference = tmp_path / "reference.jsonl"
    files = _single_process_labels(three_class_checkpoint, clip_folder, reference)
    lines = reference.read_text().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    # The state rank 1 leaves when it dies mid-run: rank 0's part is complete,
    # rank 1's holds two records and a torn third one.
    part0 = part_path(out, 0, 2)
    part1 = part_path(out, 1, 2)
    part0.write_text("".join(lines[0::2]))
    part1.write_text("".join(lines[1::2][:2]) + lines[1::2][2][:15])
    proc = subprocess.run(_label_cmd(three_class_checkpoint, clip_folder, out), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert out.read_text() == reference.read_text()
    paths = [json.loads(x)["path"] for x in out.read_text().splitlines()]
    assert len(paths) == len(set(paths)) == len(files)


def test_sharded_embeddings_equal_single_process(three_class_checkpoint: Path, clip_folder: Path,
                                                 tmp_path: Path) -> None:
    import numpy as np
    import torch

    from xmodal.engine.embed import Embedder, embed_files, index_path

    single = tmp_path / "single.npy"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank runs
    try:
        embed_files(Embedder(load_model(three_class_checkpoint), workers=0),
                    find_files([clip_folder]).files, single)
    finally:
        torch.set_num_threads(threads)
    merged = tmp_path / "merged.npy"
    proc = subprocess.run([*TORCHRUN, "-m", "xmodal", "embed", str(three_class_checkpoint),
                           str(clip_folder), "--out", str(merged), "--quiet", "--workers", "0",
                           "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]  # one bad file, reported
    assert index_path(merged).read_text() == index_path(single).read_text()
    np.testing.assert_array_equal(np.load(merged), np.load(single))
    assert not list(tmp_path.glob("merged.part*"))
