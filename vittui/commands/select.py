"""`vittui select --images N --classes C --similarity low|medium|high [--gpu-mem 24GB] [--latency-ms 20]`."""

from __future__ import annotations

from vittui.commands._common import JSON_HELP, print_json


def add_parser(sub) -> None:
    p = sub.add_parser("select", help="recommend a model and a fine-tuning strategy for your data and GPU")
    p.add_argument("--images", type=int, required=True, help="training images you have")
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--similarity", choices=["low", "medium", "high"], default="medium",
                   help="how close your images are to ImageNet-style photos")
    p.add_argument("--gpu-mem", help="GPU memory, e.g. 24GB")
    p.add_argument("--latency-ms", type=float, help="inference latency budget per image")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from vittui.commands.estimate import parse_size
    from vittui.planning.select import recommend

    gpu_gb = parse_size(args.gpu_mem) / (1 << 30) if args.gpu_mem else None
    recs = recommend(args.images, args.classes, args.similarity, gpu_mem_gb=gpu_gb, latency_ms=args.latency_ms,
                     top=args.top)
    if args.json:
        print_json([{"rank": i, "model": r.model.id, "key": r.model.key, "source": r.model.source,
                     "strategy": r.strategy, "score": r.score, "params": r.model.params, "resolution": r.resolution,
                     "imagenet_top1": r.model.imagenet_top1, "peak_bytes": r.peak_bytes, "latency_ms": r.latency_ms,
                     "reasons": r.reasons} for i, r in enumerate(recs, 1)])
        return 0 if recs else 1
    if not recs:
        print("no catalogued model meets these constraints; relax --gpu-mem or --latency-ms")
        return 1
    for i, r in enumerate(recs, 1):
        m = r.model
        top1 = f"{m.imagenet_top1:.1f}%" if m.imagenet_top1 is not None else "n/a"
        mem = f"{r.peak_bytes / (1 << 30):.1f} GiB" if r.peak_bytes else "?"
        lat = f"{r.latency_ms:.1f} ms" if r.latency_ms is not None else "?"
        print(f"{i}. {m.id}  [{r.strategy}]  {m.params / 1e6:.1f} M params, {r.resolution}px, "
              f"ImageNet top-1 {top1}, peak ≈ {mem}, latency ≈ {lat}")
        for reason in r.reasons:
            print(f"     - {reason}")
    return 0
