"""Real media in class folders, and labelling records about them with chosen labels and scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from tests.utils import write_image, write_video

CLASSES = ["run", "walk"]


def media_tree(root: Path) -> dict[str, Path]:
    """data/run/{a.mp4,p.png}, data/walk/{b.mp4,q.jpg}, other/c.mp4 (outside the class folders)."""
    files = {
        "a": write_video(root / "data" / "run" / "a.mp4", 30, size=(64, 48), fps=10),
        "b": write_video(root / "data" / "walk" / "b.mp4", 20, size=(48, 64), fps=5),
        "c": write_video(root / "other" / "c.mp4", 12, size=(64, 48), fps=10),
        "p": write_image(root / "data" / "run" / "p.png", size=(40, 30)),
        "q": write_image(root / "data" / "walk" / "q.jpg", size=(30, 40)),
    }
    return files


def record(path: Path, label: str, score: float, *, windows: list[tuple[float, float, str, float]] = (),
           frames: int = 4) -> dict:
    """A record as ``xmodal label`` writes it, with the real frame count, span and sampled times."""
    import xmodal

    top = [{"label": label, "score": score}, {"label": next(c for c in CLASSES + ["other"] if c != label),
                                               "score": round(1 - score, 6)}]
    if path.suffix in (".png", ".jpg"):
        return {"path": str(path), "label": label, "score": score, "top": top, "kind": "image", "frames": 1,
                "duration_s": None, "model": "test"}
    clip = xmodal.sample_frames(path, frames=frames)
    r = {"path": str(path), "label": label, "score": score, "top": top, "kind": "video",
         "frames": clip.info.num_frames, "duration_s": round(clip.info.duration_s, 3),
         "sampled_s": [round(float(t), 3) for t in clip.times_s], "model": "test"}
    if windows:
        r["clips"] = [{"start_s": a, "end_s": b, "label": lab, "score": s, "top": top, "sampled_s": [a]}
                      for a, b, lab, s in windows]
    return r


def many_records(files: dict[str, Path], n: int, seed: int = 0) -> list[dict]:
    """``n`` records cycling over the files, with seeded labels and distinct scores, plus failures."""
    rng = np.random.default_rng(seed)
    base = {key: record(path, "run", 0.5) for key, path in files.items()}
    scores = rng.permutation(n) / (2 * n) + 0.25  # distinct, in [0.25, 0.75)
    out = []
    keys = sorted(files)
    for i in range(n):
        key = keys[i % len(keys)]
        label = CLASSES[int(rng.integers(2))]
        score = round(float(scores[i]), 6)
        out.append({**base[key], "label": label, "score": score,
                    "top": [{"label": label, "score": score}]})
    return out


def write_jsonl(path: Path, records: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def read_payload(report: Path) -> dict:
    """The report's data, read back as the page's ``JSON.parse('...')`` reads it."""
    text = (report / "data.js").read_text()
    prefix, suffix = "window.XMODAL_REPORT = JSON.parse('", "');\n"
    assert text.startswith(prefix) and text.endswith(suffix)
    literal = text[len(prefix):-len(suffix)]
    assert "'" not in re.sub(r"\\.", "", literal)  # no quote ends the string early
    return json.loads(re.sub(r"\\(.)", r"\1", literal))  # undo the JS string's escapes
