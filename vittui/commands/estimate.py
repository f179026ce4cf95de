"""`vittui estimate PRESET [--set k=v]`: memory and step cost of a recipe before launch."""

from __future__ import annotations

from vittui.commands._common import JSON_HELP, load_recipe, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("estimate", help="memory (weights, grads, optimizer, activations) and step cost of a recipe")
    p.add_argument("preset")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--classes", type=int, default=10, help="number of classes of the head")
    p.add_argument("--gpu-mem", help="GPU memory to check against, e.g. 24GB (default: free memory from NVML)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=run)


def parse_size(text: str) -> int:
    t = text.strip().upper().replace("IB", "B")
    for unit, mult in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * mult)
    return int(float(t) * (1 << 30))  # a bare number is GB


def gpu_free_bytes() -> int | None:
    """Free memory of GPU 0 from NVML, or None without an NVIDIA GPU."""
    from vittui.hardware import NvmlSource

    gpus = NvmlSource().gpus()
    if not gpus or gpus[0].memory_total is None or gpus[0].memory_used is None:
        return None
    return gpus[0].memory_total - gpus[0].memory_used


def run(args) -> int:
    from vittui.planning.memory import estimate

    recipe = load_recipe(args)
    free = parse_size(args.gpu_mem) if args.gpu_mem else gpu_free_bytes()
    est = estimate(recipe, num_classes=args.classes, gpu_free_bytes=free)
    if args.json:
        print_json({"preset": args.preset, "model": est.dims.name or None, "batch_size": recipe.data.batch_size,
                    "precision": recipe.compute.precision, "img_size": recipe.model.img_size,
                    "tokens": est.dims.tokens, "gpu_free_bytes": free, **est.as_dict(), "notes": est.notes})
        return 0
    print(f"{args.preset}: batch {recipe.data.batch_size}, {recipe.compute.precision}, "
          f"img {recipe.model.img_size}px"
          + (", grad checkpointing" if recipe.compute.grad_checkpointing else "")
          + (", LoRA" if recipe.adapt.lora else "")
          + (f", freeze {recipe.adapt.freeze}" if recipe.adapt.freeze != "none" else ""))
    print(est.table())
    if free is None:
        print("  no NVIDIA GPU: no fit verdict (pass --gpu-mem 24GB to check against a card)")
    return 0
