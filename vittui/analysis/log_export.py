"""A run's log in the formats other tools read: TensorBoard event files, CSV, JSON lines. No torch.

`vittui export-log` drives it. Everything comes from the run directory through its one API:
`events.jsonl` read by `EventTail` (so `--follow` converts what was appended since the last poll), the
recipe from `RunDir.recipe_path`, probe files through `vittui.runs.probes`, the final metrics from the
`RunHistory` fold. What each event becomes (tags are the same in every format):

    Step          train/loss, train/lr, train/grad_norm, train/epoch, perf/images_per_s, perf/data_time_s,
                  perf/step_time_s, memory/torch_allocated_mib, memory/torch_reserved_mib (the last two
                  only when the worker measured them: CUDA runs)
    Eval          val/loss, val/top1, val/top5, val/ema_top1 (with EMA)
    GradFlow      grad_norm/attn/<block>, grad_norm/mlp/<block>, grad_norm/other/<name>
    DataSkipped   data/skipped_images
    AttentionProbe  image attention/rollout/image_<i> per probe image: the rollout from the probe's query
                  (CLS, or the mean of patch queries without a CLS token) as a heat map over the image,
                  at the image's size (grid x patch size without saved images); text attention/flags
    ControlAck    text events/control (live knobs: `set: lr_multiplier 1 -> 0.5`, pause, resume, …)
    Fault         text events/fault (divergence — non-finite loss —, OOM, exceptions)
    Status        text events/status; Log warnings and errors: text events/log; RunStarted: text run
    recipe.toml   text recipe, and hparams: every recipe field (`optim.lr`, …) with the final metrics
                  hparam/best_top1, hparam/final_top1, hparam/final_val_loss, hparam/final_train_loss,
                  hparam/final_step (written when the export closes)

Resumed and rewound runs follow the fold's rule (runs/history.py): at `RunStarted(resumed_from_step=K)`, at
`Rewound(to_step=K)` and at a Step at or before the last one (K = that step - 1), what was exported after
step K is superseded — the redone steps replace it, as in the dashboard. TensorBoard gets its own restart
marker (a `SessionLog.START` at step K + 1: TensorBoard hides the orphaned events after K, as tensorboardX's
`purge_step` does for a restarted writer); CSV and JSONL rewrite their files without those rows. A rewind
also becomes text events/rewind (from, to, lr multiplier, reason) at step K.

The sinks (analysis/log_sinks.py): `TensorBoardSink` (tensorboardX, one folder per run), `CsvSink`
(scalars.csv, text.csv, hparams.csv and the timm-style summary.csv), `JsonlSink` (log.jsonl); CSV and JSONL
write images as PNG files under images/. The README's "Exporting a run's log" section is the user-facing version of this table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vittui.analysis.log_sinks import FORMATS, SINKS, Sink
from vittui.runs import events as ev
from vittui.runs.history import RunHistory
from vittui.runs.store import RunDir

__all__ = ["FORMATS", "RunExport", "open_exports", "probe_pictures"]

MIB = float(1 << 20)
DEFAULT_PATCH = 16  # heat-map pixels per patch when a probe saved neither images nor its patch size


# ------------------------------------------------------------------------------------------- heat maps


_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def colormap(values: np.ndarray) -> np.ndarray:
    """(h, w) values in [0, 1] -> (h, w, 3) uint8, an inferno-like ramp (dark = little attention)."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (v - lo)[..., None]
    return np.round(_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


def heatmap_image(amap: np.ndarray, size: tuple[int, int], image: np.ndarray | None = None,
                  alpha: float = 0.6) -> np.ndarray:
    """A (gh, gw) attention map as an (H, W, 3) uint8 picture of `size` (H, W): min-max scaled, coloured,
    upsampled by nearest neighbour, blended over `image` ((H', W', C) uint8, resized) when given."""
    from PIL import Image

    a = np.asarray(amap, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    h, w = size
    heat = np.asarray(Image.fromarray(colormap(a)).resize((w, h), Image.NEAREST), dtype=np.float64)
    if image is None:
        return heat.astype(np.uint8)
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    base = np.asarray(Image.fromarray(img[..., :3].astype(np.uint8)).resize((w, h), Image.BILINEAR), dtype=np.float64)
    return np.round((1 - alpha) * base + alpha * heat).astype(np.uint8)


def probe_pictures(run: RunDir, probe_event: ev.AttentionProbe) -> list[np.ndarray]:
    """One heat-map picture per probe image of the probe file an AttentionProbe event names."""
    from vittui.analysis.attention_stats import probe_geometry, rollout_map
    from vittui.runs.probes import load_probe

    p = load_probe(probe_event.path, run.path)
    prefix, grid, query = probe_geometry(p)
    maps = rollout_map(p.attention, prefix, grid, query=query)  # (B, gh, gw)
    out = []
    for i, amap in enumerate(maps):
        image = p.images[i] if p.images is not None and i < len(p.images) else None
        if image is not None:
            size = (int(image.shape[0]), int(image.shape[1]))
        else:
            ph, pw = p.patch_size or (DEFAULT_PATCH, DEFAULT_PATCH)
            size = (grid[0] * ph, grid[1] * pw)
        out.append(heatmap_image(amap, size, image))
    return out


# ------------------------------------------------------------------------------------------- converter


def recipe_hparams(recipe_dict: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every recipe field as `section.key`: numbers, strings and booleans as they are, lists as text."""
    out: dict[str, Any] = {}
    for section, values in recipe_dict.items():
        for key, v in values.items():
            if isinstance(v, (list, tuple)):
                v = json.dumps(list(v))
            elif v is None:
                v = ""
            out[f"{section}.{key}"] = v
    return out


def final_metrics(h: RunHistory) -> dict[str, float]:
    m: dict[str, float] = {}
    best = h.best_top1
    if best is not None:
        m["hparam/best_top1"] = float(best)
    if h.last_eval is not None:
        m["hparam/final_top1"] = float(h.last_eval.top1)
        m["hparam/final_val_loss"] = float(h.last_eval.loss)
    if h.last_step is not None:
        m["hparam/final_train_loss"] = float(h.last_step.loss)
    m["hparam/final_step"] = float(h.step)
    return m


class RunExport:
    """Converts one run into one sink; `poll()` converts what was appended since the last call."""

    def __init__(self, run: RunDir, sink: Sink) -> None:
        self.run = run
        self.sink = sink
        self.tail = ev.EventTail(run.events_path)
        self.history = RunHistory(columns=("loss",), max_buckets=8)
        self.records = 0
        self._recipe_done = False
        self.closed = False
        self._last_step = 0  # the highest step exported: a resume or rewind before it supersedes the rest

    def poll(self) -> int:
        """Convert the events appended since the last poll; the number of events read."""
        if not self._recipe_done:
            self._recipe()
        events = self.tail.poll()
        for e in events:
            self.history.feed((e,))
            self.convert(e)
        if events:
            self.sink.flush()
        return len(events)

    def _recipe(self) -> None:
        self._recipe_done = True
        try:
            text = self.run.recipe_path.read_text(encoding="utf-8")
        except OSError:
            return
        t = self.run.recipe_path.stat().st_mtime
        self.sink.text("recipe", "\n".join("    " + line for line in text.splitlines()), 0, t)

    def _rewind(self, step: int, t: float) -> None:
        """The fold's rule (runs/history.py): what was exported after `step` is redone from here on."""
        if self._last_step > step:
            self.sink.rewind(step, t)
        self._last_step = min(self._last_step, step)

    def convert(self, e: ev.Event) -> None:
        s, t = self.sink, e.t
        s.event(e)
        if isinstance(e, ev.RunStarted):
            self._rewind(e.resumed_from_step, t)
        elif isinstance(e, ev.Rewound):
            self._rewind(e.to_step, t)
        elif isinstance(e, ev.Step) and e.step <= self._last_step:  # repeated steps with no resume logged
            self._rewind(e.step - 1, t)
        if isinstance(e, (ev.Step, ev.Eval)):
            self._last_step = max(self._last_step, e.step)
        if isinstance(e, ev.Step):
            for tag, v in (("train/loss", e.loss), ("train/lr", e.lr), ("train/grad_norm", e.grad_norm),
                           ("train/epoch", e.epoch), ("perf/images_per_s", e.images_per_s),
                           ("perf/data_time_s", e.data_time), ("perf/step_time_s", e.step_time)):
                s.scalar(tag, v, e.step, t)
            if e.torch_allocated or e.torch_reserved:
                s.scalar("memory/torch_allocated_mib", e.torch_allocated / MIB, e.step, t)
                s.scalar("memory/torch_reserved_mib", e.torch_reserved / MIB, e.step, t)
        elif isinstance(e, ev.Eval):
            for tag, v in (("val/loss", e.loss), ("val/top1", e.top1), ("val/top5", e.top5)):
                s.scalar(tag, v, e.step, t)
            if e.ema_top1 is not None:
                s.scalar("val/ema_top1", e.ema_top1, e.step, t)
        elif isinstance(e, ev.GradFlow):
            for name, a, m in zip(e.names, e.attn, e.mlp):
                s.scalar(f"grad_norm/attn/{name}", a, e.step, t)
                s.scalar(f"grad_norm/mlp/{name}", m, e.step, t)
            for name, v in e.other.items():
                s.scalar(f"grad_norm/other/{name}", v, e.step, t)
            if e.flags:
                s.text("grad_norm/flags", "\n\n".join(e.flags), e.step, t)
        elif isinstance(e, ev.DataSkipped):
            s.scalar("data/skipped_images", e.count, self.history.step, t)
        elif isinstance(e, ev.AttentionProbe):
            try:
                pictures = probe_pictures(self.run, e)
            except (OSError, ValueError, KeyError) as err:  # a probe file missing or torn: say so, go on
                s.text("events/log", f"attention probe at step {e.step} unreadable: {err}", e.step, t)
                pictures = []
            for i, pic in enumerate(pictures):
                s.image(f"attention/rollout/image_{i}", pic, e.step, t)
            if e.flags:
                s.text("attention/flags", "\n\n".join(e.flags), e.step, t)
        elif isinstance(e, ev.ControlAck):
            ok = "" if e.ok else " (refused)"
            detail = f": {e.detail}" if e.detail else ""
            s.text("events/control", f"{e.command}{detail}{ok}", e.step, t)
        elif isinstance(e, ev.Fault):
            hint = f" — {e.suggestion}" if e.suggestion else ""
            what = f" ({e.quantity})" if e.quantity else ""
            s.text("events/fault", f"{e.fault}{what}: {e.message}{hint}", e.step, t)
        elif isinstance(e, ev.Rewound):
            s.text("events/rewind", f"rewound from step {e.step} to {e.to_step}, lr multiplier "
                                    f"{e.lr_multiplier:g}: {e.reason}", e.to_step, t)
        elif isinstance(e, ev.Status):
            s.text("events/status", e.state + (f": {e.reason}" if e.reason else ""), e.step, t)
        elif isinstance(e, ev.Log) and e.level in ("warning", "error"):
            s.text("events/log", f"{e.level}: {e.message}", e.step, t)
        elif isinstance(e, ev.RunStarted):
            resumed = f", resumed from step {e.resumed_from_step}" if e.resumed_from_step else ""
            s.text("run", f"{e.name}: {e.model}, {e.params_total:,} parameters ({e.params_trainable:,} trainable), "
                          f"{e.num_classes} classes, {e.train_size} train / {e.val_size} val images, "
                          f"{e.total_steps} steps on {e.device}{resumed}", e.resumed_from_step, t)

    def close(self) -> None:
        """Write the hyperparameters with the final metrics, then close the sink (once)."""
        if self.closed:
            return
        self.closed = True
        try:
            from vittui.recipe import load

            hp = recipe_hparams(load(self.run.recipe_path).to_dict())
        except Exception:  # noqa: BLE001 - an unreadable recipe loses the hparams, not the export
            hp = {}
        if hp:
            self.sink.hparams(hp, final_metrics(self.history), self.history.step)
        self.sink.close()


def output_folders(runs: list[RunDir], out: Path) -> list[Path]:
    """One subfolder of `out` per run, by name (`name-2`, … when two runs share one)."""
    seen: dict[str, int] = {}
    folders = []
    for r in runs:
        n = seen.get(r.name, 0) + 1
        seen[r.name] = n
        folders.append(out / (r.name if n == 1 else f"{r.name}-{n}"))
    return folders


def open_exports(runs: list[RunDir], out: Path, fmt: str) -> list[RunExport]:
    if fmt not in SINKS:
        raise ValueError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    os.makedirs(out, exist_ok=True)
    return [RunExport(r, SINKS[fmt](folder)) for r, folder in zip(runs, output_folders(runs, out))]

