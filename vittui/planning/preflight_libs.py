"""Pre-flight, the half that asks the libraries, and `preflight()`, the one function that runs both halves
(`vittui.planning.preflight` is the torch-free one).

timm is imported only for a recipe that names a model or an augment policy (about a second, once);
torch only when the recipe asks for CUDA.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from vittui.planning.preflight import basic_problems
from vittui.recipe import Recipe

# The numeric sections timm's parsers read, by policy (timm.data.auto_augment); a section they would
# skip in silence ("rand-m9-zz") is refused here.
_AA_KEYS = {"rand": {"m", "n", "mstd", "mmax", "inc", "p"}, "augmix": {"m", "w", "d", "a", "b", "mstd"},
            "auto": {"mstd"}}


def preflight(recipe: Recipe, output_root: str | Path) -> list[str]:
    """Every problem found before a run starts, one line each ([] = go)."""
    return basic_problems(recipe, output_root) + library_problems(recipe)


def library_problems(recipe: Recipe) -> list[str]:
    return model_name_problems(recipe) + augment_problems(recipe) + device_problems(recipe)


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


__all__ = ["preflight", "library_problems", "model_name_problems", "augment_problems", "device_problems"]
