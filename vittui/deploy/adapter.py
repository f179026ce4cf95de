"""LoRA runs in an export: merged into the base weights, or kept as a peft adapter in `DIR/adapter/` beside
the un-merged base model, its module names rewritten to match the saved base (see `vittui.deploy.export`)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from vittui.deploy.export import ExportError, ExportResult
from vittui.deploy.export import _patch_json as patch_json


def deploy_module(model, lora: bool, adapter: bool):
    """The module that is written: LoRA merged, or the un-merged base beside the adapter."""
    if lora:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            deploy = copy.deepcopy(model).unload() if adapter else copy.deepcopy(model).merge_and_unload()
    else:
        deploy = model
    return deploy.eval()


def rebase_adapter(peft_model, new_base, old_prefix: str, new_prefix: str):
    """The same LoRA adapter on `new_base`, whose module names are `new_prefix + name[len(old_prefix):]`."""
    import peft

    name = peft_model.active_adapter
    cfg = copy.deepcopy(peft_model.peft_config[name])

    def move(n: str) -> str:
        return new_prefix + n[len(old_prefix):] if n.startswith(old_prefix) else n

    if cfg.target_modules is not None and not isinstance(cfg.target_modules, str):
        cfg.target_modules = sorted(move(t) for t in cfg.target_modules)
    if cfg.modules_to_save:
        cfg.modules_to_save = [move(m) for m in cfg.modules_to_save]
    cfg.inference_mode = False
    new = peft.get_peft_model(new_base, cfg, adapter_name=name)
    lead = "base_model.model."
    sd = peft.get_peft_model_state_dict(peft_model, adapter_name=name)
    moved = {lead + move(k[len(lead):]) if k.startswith(lead) else k: v for k, v in sd.items()}
    result = peft.set_peft_model_state_dict(new, moved, adapter_name=name)
    unexpected = getattr(result, "unexpected_keys", []) or []
    if unexpected:
        raise ExportError(f"adapter weights found no place in the exported base: {unexpected[:3]}")
    return new.eval()


def save_adapter(model, export_base, kind: str, fmt: str, out: Path, loaded, result: ExportResult, verify: bool):
    """Save the LoRA adapter in `out/adapter`, renamed onto the saved base; returns `loaded` with it applied."""
    old_prefix = "hf." if kind == "hf" else ""
    new_prefix = "timm_model." if (kind == "timm" and fmt == "hf") else ""
    if old_prefix == new_prefix:
        model.save_pretrained(str(out / "adapter"))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rebased = rebase_adapter(model, copy.deepcopy(export_base), old_prefix, new_prefix)
        rebased.save_pretrained(str(out / "adapter"))
    (out / "adapter" / "README.md").unlink(missing_ok=True)  # peft's empty template; our card covers it
    patch_json(out / "adapter" / "adapter_config.json", base_model_name_or_path="..")
    if verify and loaded is not None:
        import peft

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            loaded = peft.PeftModel.from_pretrained(loaded, str(out / "adapter")).eval()
        result.checked_with += " + peft.PeftModel.from_pretrained(base, DIR/adapter)"
    return loaded
