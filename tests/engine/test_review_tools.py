"""Exports for review tools, checked against each tool's documented import format.

Label Studio: labelstud.io/guide/predictions (tasks with ``data`` and ``predictions``:
``model_version``, ``score``, ``result`` items with ``id``, ``from_name``, ``to_name``, ``type``,
``value``) and labelstud.io/tags/timelinelabels (``value.ranges`` of 1-based ``{start, end}``
frames, ``value.timelinelabels``). FiftyOne: "Loading datasets from disk",
FiftyOneTemporalDetectionDataset and FiftyOneImageClassificationDataset. CVAT: "XML annotation
format" 1.1 (``<image id name>`` holding ``<tag label source>``; a video's frames are named
``frame_%06d``, as CVAT's own exporter names them). The documented schemas are checked field by
field here; the tools' own validators are run where they are installed (skipped otherwise: they do
not go in xmodal's environment: FiftyOne needs MongoDB, label-studio-sdk 2.1 pins numpy 2.2 and
pandas). Checked once in a separate venv: label-studio-sdk 2.1.2's ``LabelInterface`` finds no
error in these tasks, and Datumaro 1.13's CVAT importer reads every frame's tag back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from xmodal.engine import review_tools

ROOT = Path(__file__).resolve().parents[2]
TOP = [{"label": "run", "score": 0.9}, {"label": "walk", "score": 0.1}]


def records() -> list[dict]:
    clips = [{"start_s": 0.0, "end_s": 4.0, "label": "run", "score": 0.9, "top": TOP},
             {"start_s": 2.0, "end_s": 6.0, "label": "walk", "score": 0.6, "top": TOP},
             {"start_s": 4.0, "end_s": 8.0, "label": "run", "score": 0.7, "top": TOP}]
    return [
        {"path": "videos/a.mp4", "label": "run", "score": 0.8, "top": TOP, "kind": "video", "frames": 16,
         "duration_s": 8.0, "model": "runs/demo", "clips": clips},
        {"path": "videos/b.mp4", "label": "walk", "score": 0.55, "top": TOP, "kind": "video", "frames": 10,
         "duration_s": 2.0, "model": "runs/demo"},
        {"path": "photos/c.jpg", "label": "walk", "score": 0.5, "top": TOP, "kind": "image", "frames": 1,
         "duration_s": None, "model": "runs/demo"},
        {"path": "videos/d.mp4", "error": "cannot decode"},
    ]


# --------------------------------------------------------------------------- Label Studio

def check_label_studio(tasks: list, config_xml: str, kind: str) -> None:
    """Every documented rule of a pre-annotated task list, against its labelling config."""
    config = ET.fromstring(config_xml)
    assert config.tag == "View"
    objects = {el.get("name"): el for el in config if el.tag in ("Video", "Image")}
    controls = {el.get("name"): el for el in config if el.tag in ("Choices", "TimelineLabels")}
    assert set(objects) == {kind}
    if kind == "video":
        assert objects["video"].get("value") == "$video" and objects["video"].get("frameRate") == "$fps"
    ids = []
    for task in tasks:
        assert set(task) == {"data", "predictions"}
        assert isinstance(task["data"][kind], str)
        for prediction in task["predictions"]:
            assert isinstance(prediction["model_version"], str)
            assert isinstance(prediction["score"], float) and 0 <= prediction["score"] <= 1
            for result in prediction["result"]:
                ids.append(result["id"])
                control = controls[result["from_name"]]
                assert control.get("toName") == result["to_name"] and result["to_name"] in objects
                allowed = {c.get("value") for c in control}
                if result["type"] == "choices":
                    assert control.tag == "Choices"
                    assert set(result["value"]) == {"choices"} and set(result["value"]["choices"]) <= allowed
                else:
                    assert result["type"] == "timelinelabels" and control.tag == "TimelineLabels"
                    assert set(result["value"]) == {"ranges", "timelinelabels"}
                    assert set(result["value"]["timelinelabels"]) <= allowed
                    for span in result["value"]["ranges"]:
                        assert isinstance(span["start"], int) and isinstance(span["end"], int)
                        assert 1 <= span["start"] <= span["end"]
    assert len(ids) == len(set(ids)), "result ids must be unique"


def test_label_studio_tasks_with_a_timeline(tmp_path: Path) -> None:
    written = review_tools.write(records(), "label-studio", tmp_path / "tasks.json",
                                 url_prefix="/data/local-files/?d=")
    assert written.counts == {"video tasks": 2, "image tasks": 1}
    videos = json.loads((tmp_path / "tasks.json").read_text())
    images = json.loads((tmp_path / "tasks.images.json").read_text())
    check_label_studio(videos, (tmp_path / "tasks.config.xml").read_text(), "video")
    check_label_studio(images, (tmp_path / "tasks.images.config.xml").read_text(), "image")

    a, b = videos
    assert a["data"] == {"video": "/data/local-files/?d=videos/a.mp4", "fps": 2.0}
    prediction = a["predictions"][0]
    assert prediction["model_version"] == "runs/demo" and prediction["score"] == 0.8
    file_label, *timeline = prediction["result"]
    assert file_label["value"] == {"choices": ["run"]}
    # 16 frames over 8 s, windows centred at 2, 4 and 6 s: each frame takes the nearest centre.
    assert [(r["value"]["ranges"], r["value"]["timelinelabels"], r["score"]) for r in timeline] == [
        ([{"start": 1, "end": 6}], ["run"], 0.9), ([{"start": 7, "end": 10}], ["walk"], 0.6),
        ([{"start": 11, "end": 16}], ["run"], 0.7)]
    assert [r["type"] for r in b["predictions"][0]["result"]] == ["choices"]  # no windows: no timeline
    assert images[0]["data"] == {"image": "/data/local-files/?d=photos/c.jpg"}
    assert images[0]["predictions"][0]["result"][0]["value"] == {"choices": ["walk"]}


def test_label_studio_sdk_validates_the_tasks_where_installed(tmp_path: Path) -> None:
    interface = pytest.importorskip("label_studio_sdk.label_interface")
    review_tools.write(records(), "label-studio", tmp_path / "tasks.json")
    for stem in ("tasks", "tasks.images"):
        config = interface.LabelInterface((tmp_path / f"{stem}.config.xml").read_text())
        config.validate()
        for task in json.loads((tmp_path / f"{stem}.json").read_text()):
            assert config.validate_task({"data": task["data"]})
            assert config.validate_prediction(task["predictions"][0], return_errors=True) == []


# --------------------------------------------------------------------------- FiftyOne

def test_fiftyone_temporal_detections_and_classifications(tmp_path: Path) -> None:
    written = review_tools.write(records(), "fiftyone", tmp_path / "fo")
    assert written.counts == {"videos": 2, "images": 1}
    videos = json.loads((tmp_path / "fo" / "videos" / "labels.json").read_text())
    images = json.loads((tmp_path / "fo" / "images" / "labels.json").read_text())
    assert set(videos) == {"labels"} and set(images) == {"labels"}  # no "classes": labels are names
    for path, detections in videos["labels"].items():
        assert os.path.isabs(path)
        for d in detections:
            assert isinstance(d["label"], str) and 0 <= d["confidence"] <= 1
            assert ("support" in d) != ("timestamps" in d)
            first, last = d.get("support") or d["timestamps"]
            assert 0 <= first <= last
    a, b = (videos["labels"][os.path.abspath(p)] for p in ("videos/a.mp4", "videos/b.mp4"))
    assert [(d["label"], d["timestamps"], d["confidence"]) for d in a] == [
        ("run", [0.0, 4.0], 0.9), ("walk", [2.0, 6.0], 0.6), ("run", [4.0, 8.0], 0.7)]
    assert b == [{"label": "walk", "support": [1, 10], "confidence": 0.55}]
    assert images["labels"] == {os.path.abspath("photos/c.jpg"): {"label": "walk", "confidence": 0.5}}


def test_fiftyone_imports_it_where_installed(tmp_path: Path) -> None:
    fo = pytest.importorskip("fiftyone")
    review_tools.write(records(), "fiftyone", tmp_path / "fo")
    dataset = fo.Dataset.from_dir(dataset_type=fo.types.FiftyOneTemporalDetectionDataset,
                                  labels_path=str(tmp_path / "fo" / "videos" / "labels.json"))
    assert len(dataset) == 2


# --------------------------------------------------------------------------- CVAT

def check_cvat(xml_text: str, mode: str) -> ET.Element:
    """CVAT 1.1: version, meta/task (size, mode, labels of type tag), then images with tags."""
    root = ET.fromstring(xml_text)
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("mode") == mode
    labels = {label.findtext("name") for label in task.find("labels")}
    assert all(label.findtext("type") == "tag" for label in task.find("labels"))
    images = root.findall("image")
    assert len(images) == int(task.findtext("size"))
    for image in images:
        assert set(image.attrib) == {"id", "name"}
        for tag in image.findall("tag"):
            assert tag.get("label") in labels and tag.get("source") == "auto"
    return root


def test_cvat_tags_every_frame_of_a_video(tmp_path: Path) -> None:
    written = review_tools.write(records(), "cvat", tmp_path / "cvat")
    assert written.counts == {"videos": 2, "images": 1}
    root = check_cvat((tmp_path / "cvat" / "videos" / "a.mp4.xml").read_text(), "interpolation")
    images = root.findall("image")
    assert [(i.get("id"), i.get("name")) for i in images[:2]] == [("0", "frame_000000"),
                                                                   ("1", "frame_000001")]
    assert [i.find("tag").get("label") for i in images] == ["run"] * 6 + ["walk"] * 4 + ["run"] * 6
    plain = check_cvat((tmp_path / "cvat" / "videos" / "b.mp4.xml").read_text(), "interpolation")
    assert [i.find("tag").get("label") for i in plain.findall("image")] == ["walk"] * 10
    photos = check_cvat((tmp_path / "cvat" / "images.xml").read_text(), "annotation")
    assert [(i.get("name"), i.find("tag").get("label")) for i in photos.findall("image")] == [
        ("photos/c.jpg", "walk")]


def test_datumaro_reads_the_cvat_tags_where_installed(tmp_path: Path) -> None:
    cvat = pytest.importorskip("datumaro.plugins.data_formats.cvat.base")
    from datumaro.components.annotation import AnnotationType

    review_tools.write(records(), "cvat", tmp_path / "cvat")
    task = tmp_path / "task"
    (task / "images").mkdir(parents=True)
    (task / "annotations.xml").write_bytes((tmp_path / "cvat" / "videos" / "a.mp4.xml").read_bytes())
    for frame in range(16):  # Datumaro wants the frames' files beside the XML, as in CVAT's zip
        (task / "images" / f"frame_{frame:06d}").touch()
    source = cvat.CvatBase(str(task / "annotations.xml"))
    names = source.categories()[AnnotationType.label]
    items = sorted(source, key=lambda item: item.attributes["frame"])
    tags = [names[item.annotations[0].label].name for item in items]
    assert tags == ["run"] * 6 + ["walk"] * 4 + ["run"] * 6


def test_an_absolute_or_climbing_path_stays_inside_the_output_folder(tmp_path: Path) -> None:
    record = {**records()[1], "path": "/../../etc/x.mp4"}
    written = review_tools.write([record], "cvat", tmp_path / "cvat")
    assert written.files == [tmp_path / "cvat" / "etc" / "x.mp4.xml"]


# --------------------------------------------------------------------------- the tool

def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "export_predictions.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_export_tool_writes_each_format(tmp_path: Path) -> None:
    src = tmp_path / "preds.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records()) + '{"path": "torn')
    proc = _tool(str(src), "--to", "label-studio", "--out", str(tmp_path / "ls.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (f"wrote 2 video tasks, 1 image tasks for label-studio to 4 files in "
                                   f"{tmp_path / 'ls.json'}; left out 1 failed file(s)")
    check_label_studio(json.loads((tmp_path / "ls.json").read_text()),
                       (tmp_path / "ls.config.xml").read_text(), "video")
    proc = _tool(str(src), "--to", "cvat", "--out", str(tmp_path / "cvat"))
    assert proc.returncode == 0 and "wrote 2 videos, 1 images for cvat" in proc.stdout
    proc = _tool(str(src), "--to", "fiftyone", "--out", str(tmp_path / "fo"), "--summary", "x.csv")
    assert proc.returncode != 0 and "--summary goes with --to csv" in proc.stderr
    assert "Traceback" not in proc.stderr
