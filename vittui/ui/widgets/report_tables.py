"""The evaluation report's numbers: summary (top-1, top-k, ECE, …), per-class table, reliability table,
robustness to corruptions and throughput, as Rich tables in one scrollable widget."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from vittui.analysis.metrics import fmt_value


def fmt(x: Any, digits: int = 3) -> str:
    return fmt_value(x, digits)


def pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{100 * x:.1f}%"


def _table(title: str, *columns: str) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
              show_edge=False, expand=False)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    return t


def summary_table(r: Any) -> Table:
    t = _table("summary", "metric", "value")
    rows = [("images", r.n), ("classes", r.num_classes), ("top-1", pct(r.top1)), (f"top-{r.top5_k}", pct(r.top5)),
            ("loss", fmt(r.loss, 4)), ("macro F1", fmt(r.macro_f1)), ("balanced accuracy", pct(r.balanced_accuracy)),
            ("ECE", fmt(r.ece, 4)), ("confidence, correct", fmt(r.confidence_correct)),
            ("confidence, wrong", fmt(r.confidence_wrong))]
    if r.skipped:
        rows.append(("unreadable skipped", r.skipped))
    if r.binary:
        b = r.binary
        rows += [("AUC", fmt(b.get("auc"))), ("sensitivity", pct(b.get("sensitivity"))),
                 ("specificity", pct(b.get("specificity"))), ("PPV", pct(b.get("ppv"))), ("NPV", pct(b.get("npv")))]
    for k, v in rows:
        t.add_row(k, str(v))
    return t


def per_class_table(r: Any) -> Table:
    t = _table("per class", "class", "precision", "recall", "F1", "support")
    for c in r.per_class:
        t.add_row(str(c["name"]), fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), str(c["support"]))
    return t


def reliability_table(r: Any) -> Table:
    t = _table(f"reliability (ECE {fmt(r.ece, 4)})", "confidence", "count", "accuracy", "mean conf", "gap")
    for row in r.reliability:
        if not row.get("count"):
            continue
        acc, conf = row.get("accuracy"), row.get("confidence")
        gap = (acc - conf) if acc is not None and conf is not None else None
        t.add_row(f"{row['lo']:.2f}–{row['hi']:.2f}", str(row["count"]), fmt(acc), fmt(conf),
                  Text(fmt(gap), style="red" if gap is not None and gap < -0.1 else ""))
    return t


def robustness_table(r: Any) -> Table | Text:
    if not r.robustness:
        return Text("robustness: not measured (vittui eval without --no-robustness)", style="dim")
    t = _table("robustness", "corruption", "severity", "parameter", "top-1", "drop")
    for row in r.robustness:
        t.add_row(str(row["corruption"]), str(row["severity"]), fmt(row.get("parameter")), pct(row.get("top1")),
                  pct(row.get("drop")) if row.get("drop") is not None else "–")
    return t


def throughput_table(r: Any) -> Table | Text:
    th = r.throughput
    if not th:
        return Text("throughput: not measured", style="dim")
    t = _table(f"throughput ({th.get('device', '?')}, {th.get('img_size', '?')} px)", "batch size", "latency ms",
               "images/s")
    for row in th.get("runs", []):
        t.add_row(str(row["batch_size"]), fmt(row.get("latency_ms"), 2), fmt(row.get("images_per_s"), 1))
    return t


class ReportTables(Static):
    """`which` picks the tables: "summary", "classes" or "rest" (reliability, robustness, throughput)."""

    can_focus = True

    def __init__(self, which: str, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.which = which
        self.report: Any = None

    def show(self, report: Any) -> None:
        self.report = report
        self.update(self.build())

    def build(self) -> Group | Text:
        r = self.report
        if r is None:
            return Text("")
        if self.which == "summary":
            return Group(summary_table(r))
        if self.which == "classes":
            return Group(per_class_table(r))
        return Group(reliability_table(r), Text(""), robustness_table(r), Text(""), throughput_table(r))
