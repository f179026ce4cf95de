"""Which library builds a model name: `resolve_source` says "timm" or "hf" (no torch at import).

Used by `build_model` and by the script exporter (`vittui.planning.codegen`), which must not load torch;
timm itself is imported only when a bare name has to be looked up in its registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vittui.models.errors import ModelError

_PATHLIKE = ("/", "./", "../", "~")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path` (a model's config.json), or ModelError saying why not."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def _folder_kind(folder: Path) -> str | None:
    """'timm' or 'hf' for a local model folder, None when it holds no model we know."""
    cfg = folder / "config.json"
    if cfg.is_file():
        return "timm" if "architecture" in read_json(cfg) else "hf"
    if any(folder.glob("*.safetensors")):
        return "timm"
    return None


def resolve_source(name: str, source: str) -> str:
    """Which library builds `name`: "timm" or "hf".

    An explicit `source` wins. With "auto": a local folder is judged by its `config.json` (timm writes an
    `architecture` key, transformers an `architectures`/`model_type`), or by bare `*.safetensors` (timm);
    `hf-hub:` / `timm/...` names are timm hub names; any other name with a "/" is a Hugging Face id; a
    name timm knows (the `.tag` suffix stripped) is timm; anything else goes to transformers.
    """
    if source in ("timm", "hf"):
        return source
    if source != "auto":
        raise ModelError(f"model.source must be auto, timm or hf (got {source!r})")
    path = Path(name).expanduser()
    if name and path.is_dir():
        kind = _folder_kind(path)
        if kind is None:
            raise ModelError(
                f"model.name {name!r} is a folder without config.json or *.safetensors; "
                "point it at a folder saved by timm or transformers"
            )
        return kind
    if name.startswith(_PATHLIKE) and not path.exists():
        raise ModelError(f"model.name {name!r} looks like a path but no such folder exists")
    if name.startswith(("hf-hub:", "local-dir:", "timm/")):
        return "timm"
    if "/" in name:
        return "hf"
    import timm

    return "timm" if timm.is_model(name.split(".", 1)[0]) else "hf"



__all__ = ["resolve_source", "read_json"]
