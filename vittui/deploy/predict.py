"""Class probabilities for image files from a trained run.

The images go through the run's own evaluation transform (`build_transform(recipe, train=False)`), so a
prediction here is what `vittui eval` would have computed for the same image. Files are read with
`open_image` (any Pillow mode to RGB, EXIF orientation, decompression-bomb guard); a file that cannot be
read is reported and skipped, never fatal. Folders are searched recursively for image files and run in
batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


@dataclass
class Prediction:
    image: str
    top: list[tuple[str, float]]  # (class name, probability), most probable first
    indices: list[int]  # class indices of `top`

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def index(self) -> int:
        return self.indices[0]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image,
                "predictions": [{"class": c, "index": i, "prob": p} for (c, p), i in zip(self.top, self.indices)]}


@dataclass
class Skipped:
    image: str
    error: str


@dataclass
class PredictResult:
    run: str
    checkpoint: str
    ema: bool
    classes: list[str]
    predictions: list[Prediction] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "checkpoint": self.checkpoint, "ema": self.ema,
                "predictions": [p.to_dict() for p in self.predictions],
                "skipped": [{"image": s.image, "error": s.error} for s in self.skipped]}


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Files to predict on: each file as given, each folder's image files (recursive, sorted).
    A path that does not exist raises FileNotFoundError; a folder without images gives nothing."""
    from vittui.data.readers import IMAGE_EXTENSIONS

    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such image or folder: {p}")
    return files


def _batches(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def predict_images(model: Any, transform: Callable, classes: Sequence[str], files: Sequence[Path], *,
                   top_k: int = 5, batch_size: int = 64, device: Any = "cpu",
                   progress: Callable[[int], None] | None = None,
                   on_skip: Callable[[Skipped], None] | None = None) -> tuple[list[Prediction], list[Skipped]]:
    """Top-k (class, probability) per readable file; unreadable files come back in the second list.
    `progress(n)` is called after each batch with the number of files it covered."""
    import torch

    from vittui.analysis.evaluate import logits_of
    from vittui.data.readers import UnreadableImage, open_image

    k = max(1, min(int(top_k), len(classes)))
    preds: list[Prediction] = []
    skipped: list[Skipped] = []
    model.eval()
    for chunk in _batches(list(files), max(1, int(batch_size))):
        tensors, names = [], []
        for f in chunk:
            try:
                tensors.append(transform(open_image(f)))
                names.append(str(f))
            except UnreadableImage as e:
                s = Skipped(str(f), str(e))
                skipped.append(s)
                if on_skip:
                    on_skip(s)
            except Exception as e:  # noqa: BLE001 - a transform failing on one odd image skips it
                s = Skipped(str(f), f"{type(e).__name__}: {e}")
                skipped.append(s)
                if on_skip:
                    on_skip(s)
        if tensors:
            x = torch.stack(tensors).to(device)
            with torch.inference_mode():
                probs = logits_of(model(x)).float().softmax(dim=1).cpu()
            top_p, top_i = probs.topk(k, dim=1)
            for name, ps, idx in zip(names, top_p.tolist(), top_i.tolist()):
                preds.append(Prediction(name, [(str(classes[i]), float(p)) for p, i in zip(ps, idx)], idx))
        if progress:
            progress(len(chunk))
    return preds, skipped


def predict(run_path: str | Path, inputs: Sequence[str | Path], *, checkpoint: str = "best", top_k: int = 5,
            batch_size: int | None = None, device: str | None = None,
            progress: Callable[[int], None] | None = None, on_skip: Callable[[Skipped], None] | None = None,
            files: Sequence[Path] | None = None) -> PredictResult:
    """Restore the run's model (EMA weights when it kept them) and predict on `inputs` (files or folders)."""
    import torch

    from vittui.data.transforms import build_transform
    from vittui.train.restore import restore

    restored = restore(run_path, checkpoint)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = restored.model.to(dev)
    if files is None:
        files = image_files(inputs)
    transform = build_transform(restored.recipe, train=False)
    preds, skipped = predict_images(model, transform, restored.classes, files, top_k=top_k,
                                    batch_size=batch_size or restored.recipe.data.batch_size, device=dev,
                                    progress=progress, on_skip=on_skip)
    return PredictResult(run=str(run_path), checkpoint=restored.checkpoint.name, ema=restored.ema,
                         classes=list(restored.classes), predictions=preds, skipped=skipped)


__all__ = ["Prediction", "Skipped", "PredictResult", "image_files", "predict_images", "predict"]
