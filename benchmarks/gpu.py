"""On a CUDA machine: ViT-S/16 at 224 px in bf16 (images/s), the memory estimator against
`torch.cuda.max_memory_allocated`, and NVML's numbers beside torch's. Skipped (exit 0) without CUDA.

    python benchmarks/gpu.py [--quick] [--batch 128] [--steps 50]

Throughput alternates A/B between vittui's step settings (fused AdamW, bf16 autocast through the same
`torch.autocast` the loop gets from accelerate, channels_last off) and a plain fp32-master bf16 loop,
so the ratio is measured in one run; the estimator error is (estimate.measurable - measured peak) /
measured peak for each batch size tried.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median  # noqa: E402


def cuda_or_reason() -> str | None:
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        return f"torch is not importable ({e})"
    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__} (CPU-only build or no driver)"
    return None


def recipe_for(batch: int):
    from vittui.recipe import Recipe

    r = Recipe()
    return r.with_overrides({
        "model.name": "vit_small_patch16_224", "model.img_size": 224, "data.batch_size": batch,
        "compute.precision": "bf16", "compute.device": "cuda", "optim.fused": True,
    })


def throughput(batch: int, steps: int, fused: bool) -> float:
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", num_classes=1000, drop_path_rate=0.1).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=fused or None)
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = crit(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    del model, opt, x, y
    torch.cuda.empty_cache()
    return steps * batch / dt


def estimator_error(batch: int) -> tuple[int, int]:
    import torch

    from vittui.models.build import build_model
    from vittui.planning.memory import estimate
    from vittui.train.optim import build_optimizer

    r = recipe_for(batch)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build_model(r.model, 1000, drop_path=r.regularize.drop_path).cuda()
    opt = build_optimizer(model, r, "cuda")
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")
    for _ in range(2):  # the optimizer state exists after the first step
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated()
    est = estimate(r, num_classes=1000)
    del model, opt, x, y
    torch.cuda.empty_cache()
    return est.measurable, measured


def nvml_beside_torch() -> None:
    import torch

    from vittui.hardware import NvmlSource

    src = NvmlSource()
    gpus = src.gpus()
    if not gpus:
        print(f"NVML: no GPUs reported ({getattr(src, 'reason', '')})")
        return
    g = gpus[0]
    print(f"NVML GPU 0: {g}")
    print(f"torch: allocated {torch.cuda.memory_allocated() / 2**20:.0f} MiB, reserved "
          f"{torch.cuda.memory_reserved() / 2**20:.0f} MiB (NVML 'used' also counts the CUDA context and "
          f"other processes)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    reason = cuda_or_reason()
    if reason:
        print(f"gpu.py: skipped — {reason}")
        return 0
    import torch

    if a.quick:
        a.steps, a.rounds = 15, 2
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    fused, plain = [], []
    for i in range(a.rounds):
        for f in ((True, False) if i % 2 == 0 else (False, True)):
            (fused if f else plain).append(throughput(a.batch, a.steps, f))
        print(f"round {i + 1}: fused AdamW {fused[-1]:.0f} img/s, foreach AdamW {plain[-1]:.0f} img/s", flush=True)
    print(f"ViT-S/16 224 px bf16, batch {a.batch}: {median(fused):.0f} img/s (fused AdamW), "
          f"{median(plain):.0f} img/s (foreach); fused/foreach {median(fused) / median(plain):.3f}")
    for b in ((32, a.batch) if a.quick else (32, 64, a.batch)):
        est, got = estimator_error(b)
        print(f"estimator, batch {b}: estimate {est / 2**30:.2f} GiB, max_memory_allocated {got / 2**30:.2f} GiB, "
              f"error {100 * (est - got) / got:+.1f}%")
    nvml_beside_torch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
