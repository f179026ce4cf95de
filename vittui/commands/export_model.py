"""`vittui export-model RUN --format safetensors|hf|onnx|torchscript -o DIR`: the trained model for
deployment, with preprocess.json and a model card, checked by loading it back and comparing logits."""

from __future__ import annotations

import sys

from vittui.commands._common import resolve_run

FORMATS = ("safetensors", "hf", "onnx", "torchscript")  # same as vittui.deploy.export.FORMATS, without torch


def add_parser(sub) -> None:
    p = sub.add_parser("export-model", help="export a trained run: safetensors, hf, onnx or torchscript")
    p.add_argument("run")
    p.add_argument("--format", "-f", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write (must be empty)")
    p.add_argument("--checkpoint", default="best", help="best | last | a step number")
    p.add_argument("--adapter", action="store_true",
                   help="LoRA runs: keep the peft adapter (DIR/adapter) beside the base instead of merging")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--no-verify", action="store_true", help="skip loading the export back to compare logits")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--jit-trace", action="store_true",
                   help="torchscript: write a TorchScript file with the deprecated torch.jit.trace "
                        "instead of a torch.export program (model.pt2)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vittui.deploy.export import ExportError, ExportInputError, export_model

    rd = resolve_run(args, args.run)
    try:
        res = export_model(rd.path, args.output, args.format, checkpoint=args.checkpoint, adapter=args.adapter,
                           verify=not args.no_verify, opset=args.opset, force=args.force, jit_trace=args.jit_trace)
    except ExportInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"ExportError: {e}", file=sys.stderr)
        return 1
    what = f"{rd.name}/{res.checkpoint}" + (" (EMA weights)" if res.ema else "")
    if res.lora:
        what += ", LoRA " + ("kept as adapter" if res.lora == "adapter" else "merged")
    print(f"exported {what} as {res.format} to {res.out_dir}")
    for f in res.files:
        print(f"  {f}")
    if res.max_abs_diff is not None:
        print(f"check: {res.checked_with}: max |logits diff| {res.max_abs_diff:.2g} (<= 1e-4)")
    else:
        print("check: not run", file=sys.stderr)
    for n in res.notes:
        print(f"note: {n}", file=sys.stderr)
    return 0
