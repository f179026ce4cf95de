"""Pre-flight, the half that asks the libraries, and `preflight()`, the one function that runs both halves
(`vittui.planning.preflight` is the torch-free one).

timm is imported only for a recipe that names a model or an augment policy (about a second, once);
torch only when the recipe asks for CUDA.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from vittui.planning.preflight import basic_problems, is_local_path, safetensors_header_problem
from vittui.recipe import Recipe

# The numeric sections timm's parsers read, by policy (timm.data.auto_augment); a section they would
# skip in silence ("rand-m9-zz") is refused here.
_AA_KEYS = {"rand": {"m", "n", "mstd", "mmax", "inc", "p"}, "augmix": {"m", "w", "d", "a", "b", "mstd"},
            "auto": {"mstd"}}


def preflight(recipe: Recipe, output_root: str | Path) -> list[str]:
    """Every problem found before a run starts, one line each ([] = go)."""
    return basic_problems(recipe, output_root) + library_problems(recipe)


def library_problems(recipe: Recipe) -> list[str]:
    names = model_name_problems(recipe)
    return (names + (model_build_problems(recipe) if not names else []) + augment_problems(recipe)
            + device_problems(recipe) + hf_dataset_problems(recipe))


def hf_dataset_problems(recipe: Recipe) -> list[str]:
    """Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), a Hub dataset id must be in the local cache."""
    import os

    d = recipe.data
    if d.source != "hf" or is_local_path(d.path):
        return []
    if not any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return []  # online: the loader fetches it (and says so in one line if it cannot)
    try:
        from huggingface_hub import scan_cache_dir

        if any(r.repo_id == d.path and r.repo_type == "dataset" for r in scan_cache_dir().repos):
            return []
    except Exception:  # noqa: BLE001 - no cache at all
        pass
    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    cache = Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets").expanduser()
    if cache.is_dir() and any(cache.glob(d.path.replace("/", "___") + "*")):  # the datasets library's own cache
        return []
    return [f"data.path {d.path!r} is not a local dataset folder and not in the Hugging Face cache, and the Hub "
            f"is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"]


def model_build_problems(recipe: Recipe) -> list[str]:
    """What needs the network itself — `model.weights` fitting the architecture, LoRA targets present —
    checked on a timm model built on the meta device (no memory, no initialisation cost), and only when
    the recipe loads weights or asks for LoRA. Hugging Face models are left to the worker (their config
    may need the Hub)."""
    from dataclasses import replace

    m, a = recipe.model, recipe.adapt
    weights = _safetensors_file(m.weights)
    if not (a.lora or weights):
        return []
    import torch

    from vittui.models.build import build_model, resolve_source
    from vittui.models.errors import ModelError

    try:
        if resolve_source(m.name, m.source) != "timm" or Path(m.name).expanduser().exists():
            return []
        with torch.device("meta"):
            model = build_model(replace(m, pretrained=False, weights=""), 2)
    except ModelError as e:
        return [str(e)]
    except Exception:  # noqa: BLE001 - a model the meta device cannot build: the worker will tell
        return []
    problems = _weights_fit_problems(model, weights, m.weights) if weights else []
    if a.lora:
        from vittui.models.adapt import lora_target_modules

        try:
            lora_target_modules(model, a)
        except ModelError as e:
            problems.append(str(e))
    return problems


def _safetensors_file(weights: str) -> Path | None:
    """The safetensors file `model.weights` names (itself, or model.safetensors in its folder), if any."""
    if not weights:
        return None
    p = Path(weights).expanduser()
    if p.is_dir():
        p = p / "model.safetensors"
    return p if p.is_file() and p.suffix == ".safetensors" and not safetensors_header_problem(p) else None


def _weights_fit_problems(model, file: Path, named: str) -> list[str]:
    """None of the file's tensors fitting the model (by name and shape, after timm's own checkpoint filter)
    is what the worker refuses; read from the file's header and compared on the meta device."""
    import json
    import struct

    import torch

    with open(file, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    for prefix in ("base_model.model.", "_orig_mod.", "module."):  # as models/fetch.py unwraps them
        if shapes and all(k.startswith(prefix) for k in shapes):
            shapes = {k[len(prefix):]: v for k, v in shapes.items()}
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fits = [k for k, s in shapes.items() if own.get(k) == s]
    if not fits:
        try:
            import sys

            fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
            if fn is not None:
                sd = fn({k: torch.empty(s, device="meta") for k, s in shapes.items()}, model)
                fits = [k for k, v in sd.items() if own.get(k) == tuple(v.shape)]
        except Exception:  # noqa: BLE001 - the filter could not run on the meta device: trust the worker
            return []
    if fits:
        return []
    arch = type(model).__name__
    return [f"model.weights {named} does not fit the model ({arch}, {len(own)} tensors): none of its "
            f"{len(shapes)} tensors has a name and shape the model has (e.g. {next(iter(shapes), '-')}); check "
            f"model.name and the size overrides"]


def model_name_problems(recipe: Recipe) -> list[str]:
    m = recipe.model
    name, source = m.name, m.source
    if source == "hf" or not name:
        return []
    if name.startswith(("hf-hub:", "local-dir:", "timm/")) or Path(name).expanduser().exists():
        return []
    if source == "auto" and ("/" in name or name.startswith(("~", "."))):
        return []  # a Hugging Face id (or a path, which the builder explains)
    arch = name.split(".", 1)[0]
    if _in_catalog(arch):  # the catalogue's timm names: no timm import for the common case
        return []
    import timm

    if timm.is_model(arch):
        return []
    if source == "auto" and _in_hf_cache(name):
        return []
    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    what = "a timm model" if source == "timm" else "a timm model, a local folder or in the Hugging Face cache"
    return [f"model.name {name!r} is not {what}{hint}"]


def _in_catalog(arch: str) -> bool:
    from vittui.models.catalog import load_catalog

    return any(m.source == "timm" and m.timm_base == arch.lower() for m in load_catalog())


def _in_hf_cache(name: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir

        return any(r.repo_id == name for r in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache, no hub library: not there
        return False


def augment_problems(recipe: Recipe) -> list[str]:
    s = recipe.augment.auto_augment
    if not s or s == "trivialaugment":
        return []
    from timm.data import auto_augment as aa

    parts = s.split("-")
    policy = parts[0]
    kind = policy if policy in ("rand", "augmix") else "auto"
    left = []
    for c in parts[1:]:
        if kind == "rand" and c.startswith("t"):
            continue  # rand's transform-set option, read whole
        cs = re.split(r"(\d.*)", c)
        if len(cs) < 2 or cs[0] not in _AA_KEYS[kind]:
            left.append(c)
    if left:
        return [f"augment.auto_augment {s!r}: timm's parser would skip {', '.join(repr(c) for c in left)} "
                f"(sections it reads for {kind!r}: {', '.join(sorted(_AA_KEYS[kind]))})"]
    try:
        hp = {"translate_const": 100, "img_mean": (124, 116, 104)}
        {"rand": aa.rand_augment_transform, "augmix": aa.augment_and_mix_transform}.get(
            kind, aa.auto_augment_transform)(s, hp)
    except Exception as e:  # noqa: BLE001 - timm asserts on what it cannot read
        return [f"augment.auto_augment {s!r} is not a policy timm reads: {type(e).__name__}: {e}".rstrip(": ")]
    return []


def device_problems(recipe: Recipe) -> list[str]:
    if recipe.compute.device != "cuda":
        return []
    import torch

    if not torch.cuda.is_available():
        return ["compute.device = 'cuda' but no CUDA device is available here (set compute.device = 'auto' "
                "or 'cpu')"]
    return []


__all__ = ["preflight", "library_problems", "model_name_problems", "model_build_problems", "augment_problems",
           "device_problems"]
