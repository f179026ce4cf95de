"""Where `vittui export-log` writes (analysis/log_export.py converts, these write): TensorBoard event files
(tensorboardX), CSV (scalars.csv, text.csv, hparams.csv and the timm-style summary.csv) and JSON lines
(log.jsonl); CSV and JSONL write images as PNG files under images/. No torch.

Every sink takes the same calls (`Sink`), including `rewind(step)`: what was written after `step` is
superseded by redone steps (a resume or a divergence-guard rewind). TensorBoard gets a `SessionLog.START`
at step + 1 (TensorBoard hides the orphaned events before it, as for tensorboardX's `purge_step`); CSV and
JSONL rewrite their files without those records.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vittui.runs import events as ev
from vittui.runs.summary_csv import SummaryCsv

FORMATS = ("tensorboard", "csv", "jsonl")


class Sink:
    """Where converted records go. `wall_time` is the event's time (seconds since the epoch)."""

    def scalar(self, tag: str, value: float, step: int, wall_time: float) -> None: ...

    def text(self, tag: str, text: str, step: int, wall_time: float) -> None: ...

    def image(self, tag: str, picture: np.ndarray, step: int, wall_time: float) -> None: ...

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float], step: int) -> None: ...

    def event(self, event: ev.Event) -> None:
        """Every raw event, for sinks that fold them themselves (CSV's summary.csv)."""

    def rewind(self, step: int, wall_time: float) -> None:
        """What was written for steps after `step` is superseded: a resume or a rewind redoes them."""

    def flush(self) -> None: ...

    def close(self) -> None: ...


def _import_tensorboardx():
    """tensorboardX's writer imports torch at import time when it is installed, only to accept tensors;
    this exporter hands it numpy, so torch is hidden while tensorboardX loads (unless already loaded)."""
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        import tensorboardX
        return tensorboardX
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        import tensorboardX
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return tensorboardX


class TensorBoardSink(Sink):
    def __init__(self, logdir: Path) -> None:
        tbx = _import_tensorboardx()
        logdir.mkdir(parents=True, exist_ok=True)
        for old in logdir.glob("events.out.tfevents.*"):  # exporting again replaces the last export
            old.unlink()
        self.writer = tbx.SummaryWriter(logdir=str(logdir), flush_secs=10)

    def scalar(self, tag, value, step, wall_time):
        self.writer.add_scalar(tag, float(value), int(step), walltime=wall_time)

    def text(self, tag, text, step, wall_time):
        self.writer.add_text(tag, text, int(step), walltime=wall_time)

    def image(self, tag, picture, step, wall_time):
        self.writer.add_image(tag, picture, int(step), walltime=wall_time, dataformats="HWC")

    def rewind(self, step, wall_time):
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        # TensorBoard purges the events at or after a START's step that came before it in the file
        self.writer._get_file_writer().add_event(
            Event(step=step + 1, wall_time=wall_time, session_log=SessionLog(status=SessionLog.START)))

    def hparams(self, hparams, metrics, step):
        from tensorboardX.summary import hparams as hparams_summary

        exp, ssi, sei = hparams_summary(hparams, metrics)
        fw = self.writer._get_file_writer()  # in this run's folder, not a sub-run as add_hparams makes
        for s in (exp, ssi, sei):
            fw.add_summary(s)
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, int(step))

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


class _FileSink(Sink):
    """CSV and JSONL: images as PNG files under images/<tag>/step-NNNNNNNN.png."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def _png(self, tag: str, picture: np.ndarray, step: int) -> str:
        from PIL import Image

        rel = Path("images") / tag.replace("/", "_") / f"step-{int(step):08d}.png"
        (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(self.folder / rel, format="PNG")
        return rel.as_posix()

    @staticmethod
    def _open(path: Path):
        return open(path, "w", newline="", encoding="utf-8")

    def _keep_until(self, f, step: int) -> Any:
        """Rewrite the file behind `f` (open for writing) keeping its records at or before `step` (and a
        CSV's header); the file reopened, positioned at its end, for the redone steps."""
        path = Path(f.name)
        f.close()
        with open(path, newline="", encoding="utf-8") as old:
            records = list(csv.reader(old)) if path.suffix == ".csv" else old.read().splitlines()
        out = self._open(path)
        if path.suffix == ".csv":
            csv.writer(out, lineterminator="\n").writerows(
                records[:1] + [r for r in records[1:] if int(r[0]) <= step])
        else:
            out.writelines(line + "\n" for line in records if int(json.loads(line)["step"]) <= step)
        return out


class CsvSink(_FileSink):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self._scalars = self._open(folder / "scalars.csv")
        self._texts = self._open(folder / "text.csv")
        self.scalars = csv.writer(self._scalars, lineterminator="\n")
        self.texts = csv.writer(self._texts, lineterminator="\n")
        self.scalars.writerow(("step", "wall_time", "tag", "value"))
        self.texts.writerow(("step", "wall_time", "tag", "text"))
        summary = folder / "summary.csv"
        if summary.exists():
            summary.unlink()
        self.summary = SummaryCsv(summary)

    def scalar(self, tag, value, step, wall_time):
        self.scalars.writerow((int(step), repr(float(wall_time)), tag, repr(float(value))))

    def text(self, tag, text, step, wall_time):
        self.texts.writerow((int(step), repr(float(wall_time)), tag, text))

    def image(self, tag, picture, step, wall_time):
        self.texts.writerow((int(step), repr(float(wall_time)), tag, self._png(tag, picture, step)))

    def hparams(self, hparams, metrics, step):
        with self._open(self.folder / "hparams.csv") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(("key", "value"))
            w.writerows(sorted(hparams.items()))
            w.writerows(sorted(metrics.items()))

    def event(self, event):
        self.summary.feed(event)

    def rewind(self, step, wall_time):
        self._scalars = self._keep_until(self._scalars, step)
        self._texts = self._keep_until(self._texts, step)
        self.scalars = csv.writer(self._scalars, lineterminator="\n")
        self.texts = csv.writer(self._texts, lineterminator="\n")

    def flush(self):
        self._scalars.flush()
        self._texts.flush()

    def close(self):
        self._scalars.close()
        self._texts.close()


class JsonlSink(_FileSink):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self._f = self._open(folder / "log.jsonl")

    def _write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")

    def scalar(self, tag, value, step, wall_time):
        self._write({"kind": "scalar", "tag": tag, "step": int(step), "wall_time": wall_time,
                     "value": _num(float(value))})

    def text(self, tag, text, step, wall_time):
        self._write({"kind": "text", "tag": tag, "step": int(step), "wall_time": wall_time, "text": text})

    def image(self, tag, picture, step, wall_time):
        self._write({"kind": "image", "tag": tag, "step": int(step), "wall_time": wall_time,
                     "path": self._png(tag, picture, step), "height": int(picture.shape[0]),
                     "width": int(picture.shape[1])})

    def hparams(self, hparams, metrics, step):
        self._write({"kind": "hparams", "step": int(step), "hparams": hparams,
                     "metrics": {k: _num(v) for k, v in metrics.items()}})

    def rewind(self, step, wall_time):
        self._f = self._keep_until(self._f, step)

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()


SINKS = {"tensorboard": TensorBoardSink, "csv": CsvSink, "jsonl": JsonlSink}
