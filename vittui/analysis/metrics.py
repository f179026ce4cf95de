"""Evaluation metrics and the report: accuracy, per-class metrics, confusion matrix, calibration, clinical
metrics for binary tasks, gathered in an `EvalReport` written as JSON and Markdown. Pure numpy, no torch:
the dashboard reads reports through this module; running a model is in `vittui.analysis.evaluate`.

Conventions:
- confusion matrix rows are true classes, columns predicted classes (as scikit-learn);
- precision/recall/F1 of a class with an empty denominator are 0 (scikit-learn's zero_division=0);
- ECE uses equal-width confidence bins over [0, 1]; bin b holds confidences c with lo < c <= hi, and
  confidence 0 falls in the first bin; ECE = sum_b (n_b / N) |accuracy_b - confidence_b|.

Edge cases, the same everywhere:
- a label outside [0, classes) is an error (ValueError), never wrapped around or dropped;
- an output row with a non-finite value (NaN/Inf logits give NaN probabilities) predicts nothing: it counts
  as wrong in top-1/top-k and in its class's recall, is left out of the confusion matrix, the calibration
  (its confidence is undefined) and the binary metrics, and the report says how many (`nonfinite`);
- AUC refuses non-finite scores (ValueError); `binary_clinical` leaves them out and says how many;
- no samples: every rate is NaN (top-1, top-k, macro F1, balanced accuracy, ECE, per-class P/R/F1, loss).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np


# --------------------------------------------------------------------------------------------------------
# Pure metrics
# --------------------------------------------------------------------------------------------------------

def _bin_index(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    idx = np.ceil(confidences * n_bins).astype(np.int64) - 1
    return np.clip(idx, 0, n_bins - 1)


def reliability_table(confidences: Any, correct: Any, n_bins: int = 15) -> list[dict[str, Any]]:
    """One row per equal-width bin: lo, hi, count, accuracy, confidence (None for an empty bin)."""
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=np.float64).ravel()
    idx = _bin_index(conf, n_bins)
    rows = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        rows.append({
            "lo": b / n_bins,
            "hi": (b + 1) / n_bins,
            "count": n,
            "accuracy": float(ok[mask].mean()) if n else None,
            "confidence": float(conf[mask].mean()) if n else None,
        })
    return rows


def expected_calibration_error(confidences: Any, correct: Any, n_bins: int = 15) -> float:
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    total = conf.size
    if total == 0:
        return float("nan")
    ece = 0.0
    for row in reliability_table(conf, correct, n_bins):
        if row["count"]:
            ece += row["count"] / total * abs(row["accuracy"] - row["confidence"])
    return float(ece)


def check_labels(labels: Any, num_classes: int, what: str = "label") -> np.ndarray:
    """The labels as int64, or a ValueError naming the first one outside [0, num_classes)."""
    y = np.asarray(labels).ravel()
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y.astype(np.float64))) or np.any(y != np.round(y)):
            raise ValueError(f"{what}s must be whole numbers in [0, {num_classes})")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} {int(y[i])} (row {i}) is outside [0, {num_classes}); "
                         f"{int(bad.sum())} of {y.size} are")
    return y


def confusion_matrix(labels: Any, preds: Any, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows true, columns predicted. Labels or predictions outside [0, C): ValueError."""
    y = check_labels(labels, num_classes)
    p = check_labels(preds, num_classes, "prediction")
    if y.size != p.size:
        raise ValueError(f"{y.size} labels for {p.size} predictions")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def per_class_metrics(labels: Any, preds: Any = None, num_classes: int | None = None, *,
                      cm: np.ndarray | None = None, unpredicted: Any = None) -> dict[str, np.ndarray]:
    """precision, recall, f1, support per class, from labels and predictions or a confusion matrix.

    `unpredicted`: per true class, samples with no prediction (non-finite outputs), outside `cm`: they count
    in the support and against recall. With no samples at all every rate is NaN."""
    if cm is None:
        if num_classes is None:
            raise ValueError("num_classes is needed with labels and predictions")
        cm = confusion_matrix(labels, preds, num_classes)
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    if unpredicted is not None:
        support = support + np.asarray(unpredicted, dtype=np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    if support.sum() == 0:  # no samples: undefined, not 0
        precision, recall, f1 = (np.full_like(tp, np.nan) for _ in range(3))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def topk_accuracy(probs: Any, labels: Any, k: int) -> float:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).ravel()
    if y.size == 0:
        return float("nan")
    k = min(k, p.shape[1])
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def roc_auc(scores: Any, positives: Any) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half.
    None when only one class is present. Non-finite scores: ValueError (a NaN has no rank)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(positives, dtype=bool).ravel()
    if not np.isfinite(s).all():
        raise ValueError(f"AUC: {int((~np.isfinite(s)).sum())} of {s.size} scores are not finite (NaN/Inf); "
                         "drop or fix them first")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < s.size:  # average ranks over ties
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_clinical(prob_positive: Any, labels: Any, threshold: float = 0.5,
                    positive: int = 1) -> dict[str, Any]:
    """AUC, sensitivity (recall of the positive class), specificity, PPV, NPV and the counts, predicting
    positive when the positive class's probability is >= threshold. Non-finite scores are left out of every
    number here and counted in `nonfinite`."""
    s = np.asarray(prob_positive, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel() == positive
    finite = np.isfinite(s)
    s, y = s[finite], y[finite]
    pred = s >= threshold
    tp = int((pred & y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    fp = int((pred & ~y).sum())

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "positive_class": int(positive),
        "threshold": float(threshold),
        "auc": roc_auc(s, y),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "nonfinite": int((~finite).sum()),
    }


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------

@dataclass
class EvalReport:
    n: int
    num_classes: int
    class_names: list[str]
    top1: float
    top5: float
    top5_k: int  # k used for "top-5": min(5, num_classes)
    loss: float | None
    per_class: list[dict[str, Any]]  # name, precision, recall, f1, support
    macro_f1: float
    balanced_accuracy: float
    confusion: list[list[int]]
    ece: float
    reliability: list[dict[str, Any]]
    confidence_correct: float | None
    confidence_wrong: float | None
    binary: dict[str, Any] | None = None
    robustness: list[dict[str, Any]] | None = None
    throughput: dict[str, Any] | None = None
    skipped: int = 0
    nonfinite: int = 0  # outputs with NaN/Inf: counted wrong, left out of the confusion matrix and calibration
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalReport":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_markdown(self) -> str:
        return report_markdown(self)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def fmt_value(x: Any, digits: int = 4) -> str:
    """A number for a table: floats to `digits` places, "–" for None, NaN and infinities."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt_value(v) for v in r) + " |")
    return out


def report_markdown(r: EvalReport) -> str:
    lines = ["# Evaluation report", "", "## Summary", ""]
    summary: list[tuple[str, Any]] = [
        ("images", r.n), ("classes", r.num_classes), ("top-1", r.top1), (f"top-{r.top5_k}", r.top5),
        ("loss", r.loss), ("macro F1", r.macro_f1), ("balanced accuracy", r.balanced_accuracy),
        ("ECE (15 bins)", r.ece), ("mean confidence, correct", r.confidence_correct),
        ("mean confidence, wrong", r.confidence_wrong),
    ]
    if r.skipped:
        summary.append(("unreadable images skipped", r.skipped))
    if r.nonfinite:
        summary.append(("non-finite outputs (NaN/Inf, counted wrong)", r.nonfinite))
    if r.binary:
        b = r.binary
        summary += [("AUC", b.get("auc")), (f"sensitivity @ {b['threshold']:g}", b.get("sensitivity")),
                    (f"specificity @ {b['threshold']:g}", b.get("specificity")), ("PPV", b.get("ppv")),
                    ("NPV", b.get("npv"))]
    lines += _table(["metric", "value"], summary)
    lines += ["", "## Per class", ""]
    lines += _table(["class", "precision", "recall", "F1", "support"],
                    [(c["name"], c["precision"], c["recall"], c["f1"], c["support"]) for c in r.per_class])
    lines += ["", "## Confusion matrix (rows: true, columns: predicted)", ""]
    lines += _table(["true \\ pred"] + list(r.class_names),
                    [[name] + list(row) for name, row in zip(r.class_names, r.confusion)])
    lines += ["", "## Reliability", ""]
    lines += _table(["bin", "count", "accuracy", "confidence"],
                    [(f"{row['lo']:.3f}–{row['hi']:.3f}", row["count"], row["accuracy"], row["confidence"])
                     for row in r.reliability])
    if r.robustness:
        lines += ["", "## Robustness", ""]
        lines += _table(["corruption", "severity", "parameter", "top-1", "drop"],
                        [(row["corruption"], row["severity"], row["parameter"], row["top1"], row.get("drop"))
                         for row in r.robustness])
    if r.throughput:
        t = r.throughput
        lines += ["", f"## Throughput ({t.get('device', '?')}, {t.get('img_size', '?')} px)", ""]
        lines += _table(["batch size", "latency ms", "images/s"],
                        [(row["batch_size"], row["latency_ms"], row["images_per_s"]) for row in t.get("runs", [])])
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path, report: EvalReport) -> tuple[Path, Path]:
    """Write `report.json` and `report.md` in `run_dir` (atomically); returns their paths."""
    from vittui.runs.store import RunDir, atomic_write_text

    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    pj, pm = run.report_path, run.report_md_path
    atomic_write_text(pj, report.to_json() + "\n")
    atomic_write_text(pm, report.to_markdown())
    return pj, pm


def report_from_probs(probs: Any, labels: Any, num_classes: int, class_names: Sequence[str] | None = None, *,
                      loss: float | None = None, threshold: float = 0.5, positive: int = 1,
                      n_bins: int = 15, skipped: int = 0) -> EvalReport:
    """Every metric of the report from class probabilities (N, C) and true labels (N,); see the module's
    docstring for non-finite rows, bad labels and empty inputs."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1, num_classes)
    y = check_labels(labels, num_classes)
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels for {len(p)} rows of probabilities")
    names = [str(c) for c in class_names] if class_names else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    n = int(len(y))
    finite = np.isfinite(p).all(axis=1)
    pf, yf = p[finite], y[finite]
    pred = pf.argmax(axis=1) if len(yf) else np.zeros(0, dtype=np.int64)
    conf = pf.max(axis=1) if len(yf) else np.zeros(0)
    correct = pred == yf  # over the finite rows; the others are wrong
    cm = confusion_matrix(yf, pred, num_classes)
    pc = per_class_metrics(None, cm=cm, unpredicted=np.bincount(y[~finite], minlength=num_classes))
    per_class = [{"name": names[i], "precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]),
                  "f1": float(pc["f1"][i]), "support": int(pc["support"][i])} for i in range(num_classes)]
    present = pc["support"] > 0
    k = min(5, num_classes)
    nan = float("nan")
    return EvalReport(
        n=n,
        num_classes=num_classes,
        class_names=names,
        top1=float(correct.sum() / n) if n else nan,
        top5=topk_accuracy(pf, yf, k) * len(yf) / n if len(yf) else (0.0 if n else nan),
        top5_k=k,
        loss=loss if n else nan,
        per_class=per_class,
        macro_f1=float(pc["f1"].mean()) if n else nan,
        balanced_accuracy=float(pc["recall"][present].mean()) if present.any() else nan,
        confusion=cm.tolist(),
        ece=expected_calibration_error(conf, correct, n_bins),
        reliability=reliability_table(conf, correct, n_bins),
        confidence_correct=float(conf[correct].mean()) if correct.any() else None,
        confidence_wrong=float(conf[~correct].mean()) if (~correct).any() else None,
        binary=binary_clinical(p[:, positive], y, threshold, positive) if num_classes == 2 else None,
        skipped=int(skipped),
        nonfinite=int((~finite).sum()),
    )
