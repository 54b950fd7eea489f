"""Self-training on a user's own unlabelled videos: ``xmodal adapt RUN --unlabeled DIR``.

A model trained on photos meets video frames that look different (smaller, off-centre, blurred,
compressed objects). Its clip-level prediction, pooled over T frames, is more reliable than one
frame's, so confident clips are taken at their predicted label and join training, with the
run's labelled files, under strong augmentation; a few rounds repeat it (self-training with a
noised student, Xie et al., 2020, "Self-training with Noisy Student improves ImageNet
classification"; here each student starts from the previous model). Validation stays on the
labelled split only.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmodal.config import BATCHNORM_MODES
from xmodal.engine.reporting import Reporter

DEFAULT_ROUNDS = 2
DEFAULT_THRESHOLD = 0.7


@dataclass
class AdaptRound:
    round: int
    considered: int  # unlabelled files predicted
    selected: int  # taken at their predicted label
    per_class: dict[str, int]
    val_accuracy: float | None


def pseudo_labels(records: list[dict[str, Any]], threshold: float,
                  classes: list[str]) -> list[tuple[str, str, float]]:
    """(path, label, score) of the most confident records, class-balanced as Noisy Student
    selects: per class, those predicted as it with a pooled top score of at least ``threshold``,
    most confident first, at most half of an even share of the files (so a class the model
    over-predicts cannot flood the training set and a wrong guess does not feed itself)."""
    share = max(1, len(records) // (2 * max(1, len(classes))))
    by_class: dict[str, list[tuple[str, str, float]]] = {c: [] for c in classes}
    for r in records:
        if "error" not in r and r["score"] >= threshold and r["label"] in by_class:
            by_class[r["label"]].append((r["path"], r["label"], r["score"]))
    chosen = [row for rows in by_class.values()
              for row in sorted(rows, key=lambda row: -row[2])[:share]]
    return sorted(chosen)


def write_pseudo_csv(rows: list[tuple[str, str, float]], path: Path) -> None:
    """``path,label`` rows (file names kept byte for byte, as xmodal.names writes CSV)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label"])
    for file, label, _ in rows:
        writer.writerow([os.path.abspath(file), label])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue().encode("utf-8", "surrogateescape"))


def adapt(run: str | os.PathLike[str], unlabeled: list[str], out: str | os.PathLike[str], *,
          rounds: int = DEFAULT_ROUNDS, threshold: float = DEFAULT_THRESHOLD,
          batchnorm: str = "none", epochs: int | None = None, augment: str = "cross",
          test_bn_prior: float | None = None, workers: int | None = None,
          reporter: Reporter | None = None) -> list[AdaptRound]:
    """Self-train ``run`` on the files under ``unlabeled`` for ``rounds`` rounds into ``out``.

    With ``batchnorm`` "target" (or "mixed"), the run's BatchNorm statistics are first
    re-estimated on the unlabelled files (and half on its own training files;
    ``xmodal.engine.bn_adapt``, AdaBN), kept in ``out/rounds/0``, or ``out`` itself when
    ``rounds`` is 0. Round k then predicts every unlabelled file with the current model, writes
    the confident ones to ``out/pseudo_labels_k.csv`` and fine-tunes the current model on the
    labelled training split plus them (``init`` = the current model). Earlier rounds' runs are
    kept in ``out/rounds/k``; the last round is ``out`` itself.

    ``test_bn_prior``: N of prediction-time BatchNorm (``xmodal.models.test_time_norm``) for
    the adapted run (0: off; None: the run's), set before anything else: the BatchNorm step
    estimates its statistics with it, or (without that step) the run with it set is written to
    ``out/rounds/0`` and labels round 1. With ``rounds`` 0 and ``batchnorm`` "none" that is all
    it does (no unlabelled files): the run is copied with the prior set, every weight kept.
    Raises ConfigError / DatasetError.
    """
    from xmodal.engine.bn_adapt import check_new_folder
    from xmodal.engine.label import find_files
    from xmodal.engine.predict import load
    from xmodal.engine.train import fit, resume_config
    from xmodal.errors import ConfigError, DatasetError

    if batchnorm not in BATCHNORM_MODES:
        raise ConfigError(f"batchnorm must be one of {', '.join(BATCHNORM_MODES)}, got {batchnorm!r}")
    prior_only = rounds == 0 and batchnorm == "none"
    if rounds < 0 or (prior_only and test_bn_prior is None):
        raise ConfigError(f"rounds must be >= 1 (or 0 with --batchnorm target|mixed or "
                          f"--test-bn-prior), got {rounds}")
    if not 0 < threshold < 1:
        raise ConfigError(f"threshold must be in (0, 1), got {threshold}")
    if test_bn_prior is not None and not (test_bn_prior >= 0 and math.isfinite(test_bn_prior)):
        raise ConfigError(f"test_bn_prior must be a finite number >= 0 (0 = off), got {test_bn_prior}")
    if prior_only and unlabeled:
        raise ConfigError("--unlabeled is not used by --rounds 0 without --batchnorm (the prior "
                          "alone needs no files); drop it, or add --batchnorm or rounds")
    if not unlabeled and not prior_only:
        raise ConfigError("--unlabeled is needed for --rounds >= 1 or --batchnorm target|mixed")
    reporter = reporter or Reporter()
    out = Path(out)
    check_new_folder(Path(run), out)  # never write over the run being adapted
    current, history = Path(run), []
    if test_bn_prior is not None and batchnorm == "none":
        # The prior's run first: it labels round 1 (as the BatchNorm step's run would).
        from xmodal.engine.bn_adapt import set_test_bn_prior

        target = out if rounds == 0 else out / "rounds" / "0"
        set_test_bn_prior(current, target, test_bn_prior, reporter=reporter)
        current = target
    if prior_only:
        return []
    files = find_files(unlabeled).files
    if batchnorm != "none":
        from xmodal.engine.bn_adapt import adapt_batchnorm

        target = out if rounds == 0 else out / "rounds" / "0"
        adapt_batchnorm(current, unlabeled, target, mixed=batchnorm == "mixed", workers=workers,
                        test_bn_prior=test_bn_prior, files=files, reporter=reporter)
        current = target
    for k in range(1, rounds + 1):
        predictor = load(str(current), workers=workers)
        if predictor.thresholds is not None:
            raise ConfigError(f"{run}: a multi-label run cannot be adapted (pseudo-labels are "
                              "one class per file)")
        records = list(predictor.predict([str(f) for f in files]))
        failed = [f"{r['path']}: {r['error']}" for r in records if "error" in r]
        if failed and k == 1:  # the same files fail every round: named once
            reporter.warning(f"{len(failed)} unlabelled file(s) skipped: " + "; ".join(failed[:3])
                             + (" ..." if len(failed) > 3 else ""))
        chosen = pseudo_labels(records, threshold, predictor.classes)
        if not chosen:
            raise DatasetError(", ".join(unlabeled), f"round {k}: no unlabelled file reached a "
                               f"score of {threshold}; lower --threshold")
        csv_path = out / f"pseudo_labels_{k}.csv"
        write_pseudo_csv(chosen, csv_path)
        per_class = dict(sorted(Counter(label for _, label, _ in chosen).items()))
        reporter.info(f"round {k}/{rounds}: {len(chosen)} of {len(records)} unlabelled files "
                      f"taken at their predicted label (score >= {threshold}): {per_class}")
        target = out if k == rounds else out / "rounds" / str(k)
        overrides = {"epochs": epochs} if epochs is not None else {}
        cfg = resume_config(run, **overrides)
        cfg.out, cfg.augment = str(target), augment
        # absolute: a round resumed from another working folder still finds them
        cfg.init, cfg.pseudo_csv = str(Path(current).resolve()), str(csv_path.resolve())
        if test_bn_prior is not None:
            cfg.test_bn_prior = test_bn_prior
        if workers is not None:
            cfg.workers = workers
        result = fit(cfg.validate(), reporter)
        _record_round(target, current, k=k, selected=len(chosen), considered=len(records),
                      threshold=threshold)
        history.append(AdaptRound(k, len(records), len(chosen), per_class, result.best_accuracy))
        current = target
    return history


def _record_round(run: Path, labeller: Path, *, k: int, selected: int, considered: int,
                  threshold: float) -> None:
    """Record in ``run``'s model.json that it is self-training round ``k`` on the pseudo-labels
    of the run at ``labeller`` (whose own adaptation, if any, is kept as ``previous``), so
    ``xmodal info`` shows the whole chain."""
    from xmodal.checkpoint import read_metadata, update_metadata

    previous = read_metadata(Path(labeller) / "model.json").get("adapted")
    update_metadata(run, adapted={"method": "self-training", "round": k, "selected": selected,
                                  "considered": considered, "threshold": threshold,
                                  "from": str(Path(labeller).resolve()),
                                  **({"previous": previous} if previous else {})})

