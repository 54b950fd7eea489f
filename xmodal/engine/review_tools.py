"""Labelling records in the import formats of review tools: Label Studio, FiftyOne, CVAT.

Each writer follows the tool's documented import format (cited at each function) and takes
the records of ``xmodal label`` (see ``export.read_records``). Failed files have no
prediction to review and are left out (the caller counts them). Whole-file labels become the
tool's classification; windows (``--window``) become its timeline or temporal form, split
per frame by ``segments`` where the tool wants one label per frame. Class names are
written as ``display`` shows them (a byte that is not UTF-8 as ``\\xNN``): these tools take
text; file paths in JSON keep their exact escapes (see ``xmodal.names``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from xmodal.engine.output import json_line
from xmodal.engine.segments import record_segments
from xmodal.names import display

FORMATS = ("label-studio", "fiftyone", "cvat")


@dataclass
class Written:
    """What an export wrote: files, and how many records each part holds."""

    files: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def labelled(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that carry a prediction (failed files have none)."""
    return [r for r in records if "error" not in r and "label" in r]


def class_names(records: Sequence[dict[str, Any]]) -> list[str]:
    """Every label predicted for a file, a window or in a top-k list, sorted."""
    names = set()
    for r in records:
        for part in [r, *(r.get("clips") or [])]:
            names.add(display(part["label"]))
            names.update(display(t["label"]) for t in part.get("top") or ())
    return sorted(names)


def _write_json(path: Path, value: Any) -> Path:
    from xmodal.checkpoint import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    # json_line keeps the \udcXX escapes of non-UTF-8 file names (see xmodal.names).
    atomic_write_text(path, json_line(value) + "\n")
    return path


# --------------------------------------------------------------------------- Label Studio

def label_studio_tasks(records: Sequence[dict[str, Any]], kind: str, *, url_prefix: str = "") -> list[dict]:
    """Label Studio tasks with predictions, for one kind of media ("video" or "image").

    Format: "Import pre-annotated data into Label Studio" (labelstud.io/guide/predictions): a
    list of ``{"data": {...}, "predictions": [{"model_version", "score", "result": [...]}]}``.
    A file's label is a ``choices`` result; each window segment a ``timelinelabels`` region
    (labelstud.io/tags/timelinelabels: ``value.ranges`` of ``{"start", "end"}`` frames,
    counted from 1, and ``value.timelinelabels``). The task's ``fps`` (frames / duration)
    feeds ``<Video frameRate="$fps">`` so frames and seconds agree.
    """
    tasks = []
    for number, r in enumerate(r for r in records if r.get("kind") == kind):
        data: dict[str, Any] = {kind: url_prefix + r["path"]}
        results = [{"id": f"t{number}-file", "type": "choices", "from_name": "label", "to_name": kind,
                    "value": {"choices": [display(r["label"])]}}]
        if kind == "video" and r.get("frames") and r.get("duration_s"):
            data["fps"] = round(r["frames"] / r["duration_s"], 6)
            if r.get("clips"):
                results += _timeline_results(r, number)
        tasks.append({"data": data, "predictions": [
            {"model_version": str(r.get("model", "xmodal")), "score": r["score"], "result": results}]})
    return tasks


def _timeline_results(record: dict[str, Any], number: int) -> list[dict[str, Any]]:
    clips = record["clips"]
    return [{"id": f"t{number}-w{k}", "type": "timelinelabels", "from_name": "timeline",
             "to_name": "video", "score": clips[s.window]["score"],
             "value": {"ranges": [{"start": s.first + 1, "end": s.last + 1}],
                       "timelinelabels": [display(clips[s.window]["label"])]}}
            for k, s in enumerate(record_segments(record))]


def label_studio_config(kind: str, classes: Sequence[str]) -> str:
    """The labelling configuration the tasks' ``from_name`` / ``to_name`` refer to."""
    view = ET.Element("View")
    if kind == "video":
        ET.SubElement(view, "Video", name="video", value="$video", frameRate="$fps")
    else:
        ET.SubElement(view, "Image", name="image", value="$image")
    choices = ET.SubElement(view, "Choices", name="label", toName=kind, choice="single")
    for name in classes:
        ET.SubElement(choices, "Choice", value=name)
    if kind == "video":
        timeline = ET.SubElement(view, "TimelineLabels", name="timeline", toName="video")
        for name in classes:
            ET.SubElement(timeline, "Label", value=name)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def write_label_studio(records: Sequence[dict[str, Any]], out: Path, *, url_prefix: str = "") -> Written:
    """OUT (videos, or images when there are no videos) and OUT's ``.images.json`` sibling
    when there are both, each with its labelling config as ``<name>.config.xml``."""
    from xmodal.checkpoint import atomic_write_text

    records = labelled(records)
    classes = class_names(records)
    kinds = [k for k in ("video", "image") if any(r.get("kind") == k for r in records)] or ["video"]
    written = Written()
    for kind in kinds:
        path = out if kind == kinds[0] else out.with_name(out.stem + ".images.json")
        tasks = label_studio_tasks(records, kind, url_prefix=url_prefix)
        written.files.append(_write_json(path, tasks))
        config = path.with_name(path.stem + ".config.xml")
        atomic_write_text(config, label_studio_config(kind, classes))
        written.files.append(config)
        written.counts[f"{kind} tasks"] = len(tasks)
    return written


# --------------------------------------------------------------------------- FiftyOne

def fiftyone_video_labels(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """FiftyOneTemporalDetectionDataset ``labels.json`` (docs.voxel51.com, "Loading datasets
    from disk"): ``{"labels": {path: [{"label", "timestamps": [start, stop], "confidence"}]}}``
    with a detection per window; a file labelled whole is one detection with ``"support":
    [1, frames]`` (first and last frame). Keys are absolute paths, which FiftyOne reads where
    they are; without ``classes`` the labels are the class names themselves."""
    labels = {}
    for r in records:
        if r.get("kind") != "video":
            continue
        if r.get("clips"):
            detections = [{"label": display(c["label"]), "timestamps": [c["start_s"], c["end_s"]],
                           "confidence": c["score"]} for c in r["clips"]]
        else:
            detections = [{"label": display(r["label"]), "support": [1, max(1, int(r.get("frames") or 1))],
                           "confidence": r["score"]}]
        labels[_absolute(r["path"])] = detections
    return {"labels": labels}


def fiftyone_image_labels(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """FiftyOneImageClassificationDataset ``labels.json``: ``{"labels": {path: {"label",
    "confidence"}}}`` (the same page, "predictions with associated confidences")."""
    return {"labels": {_absolute(r["path"]): {"label": display(r["label"]), "confidence": r["score"]}
                       for r in records if r.get("kind") == "image"}}


def write_fiftyone(records: Sequence[dict[str, Any]], out: Path) -> Written:
    """``OUT/videos/labels.json`` and ``OUT/images/labels.json`` (those with files)."""
    records = labelled(records)
    written = Written()
    parts = (("video", fiftyone_video_labels(records)), ("image", fiftyone_image_labels(records)))
    for kind, labels in parts:
        if labels["labels"]:
            written.files.append(_write_json(out / f"{kind}s" / "labels.json", labels))
            written.counts[f"{kind}s"] = len(labels["labels"])
    return written


def _absolute(path: str) -> str:
    return os.path.abspath(path)


# --------------------------------------------------------------------------- CVAT

def cvat_video_xml(record: dict[str, Any], classes: Sequence[str]) -> str:
    """CVAT 1.1 XML (docs.cvat.ai, "XML annotation format") tagging every frame of one video
    task: ``<image id="N" name="frame_%06d">`` (CVAT's names for a video's frames) holding one
    ``<tag label=... source="auto">``, the label of the window the frame belongs to. Tags are
    frame-level in CVAT and carry no score."""
    root, _ = _cvat_root(display(PurePosixPath(record["path"]).name), int(record["frames"]), "interpolation",
                         classes)
    clips = record.get("clips") or []
    for segment in record_segments(record):
        label = clips[segment.window]["label"] if segment.window >= 0 else record["label"]
        for frame in range(segment.first, segment.last + 1):
            image = ET.SubElement(root, "image", id=str(frame), name=f"frame_{frame:06d}")
            ET.SubElement(image, "tag", label=display(label), source="auto")
    return _xml_text(root)


def cvat_images_xml(records: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    """CVAT 1.1 XML for an image task: one ``<image id name>`` per photo with its ``<tag>``."""
    images = [r for r in records if r.get("kind") == "image"]
    root, _ = _cvat_root("xmodal images", len(images), "annotation", classes)
    for number, r in enumerate(images):
        image = ET.SubElement(root, "image", id=str(number), name=display(r["path"]))
        ET.SubElement(image, "tag", label=display(r["label"]), source="auto")
    return _xml_text(root)


def _cvat_root(name: str, size: int, mode: str, classes: Sequence[str]) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for key, value in (("name", name), ("size", str(size)), ("mode", mode)):
        ET.SubElement(task, key).text = value
    labels = ET.SubElement(task, "labels")
    for class_name in classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = class_name
        ET.SubElement(label, "type").text = "tag"
        ET.SubElement(label, "attributes")
    return root, task


def _xml_text(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_cvat(records: Sequence[dict[str, Any]], out: Path) -> Written:
    """One XML per video (a CVAT video task is one video): ``OUT/<path>.xml``; and
    ``OUT/images.xml`` for the photos."""
    from xmodal.checkpoint import atomic_write_text

    records = labelled(records)
    classes = class_names(records)
    written = Written()
    videos = [r for r in records if r.get("kind") == "video" and r.get("frames")]
    for r in videos:
        path = out / (_relative_name(r["path"]) + ".xml")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, cvat_video_xml(r, classes))
        written.files.append(path)
    written.counts["videos"] = len(videos)
    images = sum(r.get("kind") == "image" for r in records)
    if images:
        path = out / "images.xml"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, cvat_images_xml(records, classes))
        written.files.append(path)
        written.counts["images"] = images
    return written


def _relative_name(path: str) -> str:
    """A record's path as a relative path under the output folder (no root, no '..')."""
    parts = [p for p in PurePosixPath(path.replace(os.sep, "/")).parts if p not in ("/", "..", ".")]
    return "/".join(parts) or "video"


def write(records: Sequence[dict[str, Any]], fmt: str, out: Path, *, url_prefix: str = "") -> Written:
    """Write ``records`` for review tool ``fmt`` (one of FORMATS) at ``out``."""
    if fmt == "label-studio":
        return write_label_studio(records, out, url_prefix=url_prefix)
    if fmt == "fiftyone":
        return write_fiftyone(records, out)
    if fmt == "cvat":
        return write_cvat(records, out)
    raise ValueError(f"unknown review tool format {fmt!r}; choose one of: {', '.join(FORMATS)}")


