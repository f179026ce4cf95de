"""`vittui.models.structure`: `unwrap` sees through every wrapper vittui puts around a model, and `is_hf`
judges what is left by its class. One tiny timm and one tiny transformers model, in each wrapper alone
and all nested."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tiny import TINY_TIMM

from vittui.models.adapt import lora_targets
from vittui.models.build import build_model
from vittui.models.hf import HFClassifier
from vittui.models.structure import (
    hf_classifier,
    is_hf,
    num_prefix_tokens,
    patch_size_of,
    transformer_blocks,
    unwrap,
)
from vittui.recipe import ModelSection

TINY = TINY_TIMM
TIMM = ModelSection(name="vit_tiny_patch16_224", **TINY)
HF_VIT = ModelSection(name="google/vit-base-patch16-224", **TINY)


def _peft(model: nn.Module) -> nn.Module:
    peft = pytest.importorskip("peft")
    return peft.get_peft_model(model, peft.LoraConfig(target_modules=lora_targets(model), r=2))


@pytest.fixture(scope="module")
def ddp():
    """A one-process gloo group, so DistributedDataParallel can wrap a CPU model."""
    import tempfile

    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
        try:
            yield lambda m: nn.parallel.DistributedDataParallel(m)
        finally:
            dist.destroy_process_group()


WRAPPERS = {
    "compile": lambda m, _ddp: torch.compile(m),  # an OptimizedModule; nothing compiles until it is called
    "data_parallel": lambda m, _ddp: nn.DataParallel(m),
    "ddp": lambda m, ddp: ddp(m),
    "peft": lambda m, _ddp: _peft(m),
    "peft_tuner": lambda m, _ddp: _peft(m).base_model,  # the LoraModel inside a PeftModel
}


@pytest.mark.parametrize("kind", ["timm", "hf"])
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_unwrap_each_wrapper(kind, wrapper, request):
    model = build_model(TIMM if kind == "timm" else HF_VIT, 10)
    base = model.hf if kind == "hf" else model
    ddp = request.getfixturevalue("ddp") if wrapper == "ddp" else None
    wrapped = WRAPPERS[wrapper](model, ddp)
    assert wrapped is not model
    assert unwrap(wrapped) is base
    assert is_hf(wrapped) == (kind == "hf") and is_hf(base) == (kind == "hf")
    assert len(transformer_blocks(wrapped)) == 2
    assert patch_size_of(wrapped) == (8, 8) and num_prefix_tokens(wrapped) == 1
    assert (hf_classifier(wrapped) is model) == (kind == "hf")


def test_unwrap_hf_classifier_and_nesting(ddp):
    hf = build_model(HF_VIT, 10)
    assert isinstance(hf, HFClassifier) and unwrap(hf) is hf.hf and is_hf(hf)
    nested = torch.compile(ddp(_peft(hf)))
    assert unwrap(nested) is hf.hf and is_hf(nested) and hf_classifier(nested) is hf
    timm_model = build_model(TIMM, 10)
    nested = torch.compile(ddp(_peft(timm_model)))
    assert unwrap(nested) is timm_model and not is_hf(nested) and hf_classifier(nested) is None


def test_plain_models_are_their_own_base():
    lin = nn.Linear(2, 2)
    assert unwrap(lin) is lin and not is_hf(lin) and transformer_blocks(lin) == []

    class HasHf(nn.Module):  # only HFClassifier is unwrapped through `.hf`, not anything with that name
        def __init__(self):
            super().__init__()
            self.hf = nn.Linear(2, 2)

    odd = HasHf()
    assert unwrap(odd) is odd


def test_structure_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, vittui.models.structure; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {"'torch'", "'timm'", "'transformers'", "'peft'"} & set(out.strip()[1:-1].split(", ")), out
