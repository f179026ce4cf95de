#!/usr/bin/env bash
# The GPU checks in one command, for a machine with a CUDA device:
#
#     bash benchmarks/gpu_check.sh
#
# 1. the `gpu` tests (tests/gpu: autocast bf16/fp16, fused AdamW, pinned batches, NVML and the hardware
#    pane, the estimator against max_memory_allocated, a real out-of-memory and its resume, exact resume
#    with the CUDA RNG, `train --gpus 1` and accelerate launch, torch.compile, the batch-size finder doubling
#    to a real out-of-memory under a 2 GiB cap and bisecting: test_gpu_batch_find.py, the lr range test
#    putting back the CUDA RNG: test_gpu_lr_find.py);
# 2. `python benchmarks/gpu.py --quick` (ViT-S/16 bf16 images/s, estimator error, NVML beside torch);
# then a summary table: each test with its result and time, and gpu.py's numbers. About 5 minutes on one
# H100/H200 (budget: under 8); a pip install on a fresh machine comes on top and is timed apart.
#
# Without CUDA it prints one line and exits 0. On a fresh machine (vittui not importable) it creates
# .venv and installs the package with its test extra (`pip install -e '.[test]'`), as the README does.
# Logs and the JUnit XML go to $GPU_CHECK_OUT (default: $OUT when set, else a new temporary folder).
# Exit status: 0 when every test passed (or skipped with its reason) and gpu.py ran, 1 otherwise.

set -uo pipefail
cd "$(dirname "$0")/.."

NO_CUDA_LINE="gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing to run"
T0=$(date +%s)

pick_python() {
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then echo "$VIRTUAL_ENV/bin/python"
    elif [ -x .venv/bin/python ]; then echo "$PWD/.venv/bin/python"
    else command -v python3 || command -v python; fi
}

cuda_state() {  # prints yes / no / noimport
    "$1" - <<'EOF' 2>/dev/null || echo noimport
try:
    import torch
    import vittui  # noqa: F401
except Exception:
    print("noimport")
else:
    print("yes" if torch.cuda.is_available() else "no")
EOF
}

nvidia_present() {
    [ -e /dev/nvidia0 ] || [ -e /dev/nvidiactl ] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
}

PY=$(pick_python)
STATE=$(cuda_state "$PY")
INSTALL_S=0
if [ "$STATE" = "noimport" ]; then
    if ! nvidia_present; then
        echo "$NO_CUDA_LINE"
        exit 0
    fi
    echo "gpu_check: vittui is not importable by $PY; creating .venv and installing '.[test]' (pip)"
    t=$(date +%s)
    [ -x .venv/bin/python ] || python3 -m venv .venv || { echo "gpu_check: could not create .venv"; exit 1; }
    PY="$PWD/.venv/bin/python"
    "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    if ! "$PY" -m pip install -q -e '.[test]'; then
        echo "gpu_check: pip install -e '.[test]' failed"
        exit 1
    fi
    INSTALL_S=$(( $(date +%s) - t ))
    STATE=$(cuda_state "$PY")
fi
if [ "$STATE" != "yes" ]; then
    echo "$NO_CUDA_LINE"
    exit 0
fi

OUTDIR=${GPU_CHECK_OUT:-${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}}
mkdir -p "$OUTDIR"
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
export PATH="$(dirname "$PY"):$PATH"  # the `vittui` console script of this environment, for the e2e tests
T1=$(date +%s)

"$PY" - <<'EOF' | tee "$OUTDIR/device.txt"
import torch
p = torch.cuda.get_device_properties(0)
print(f"device: {torch.cuda.get_device_name(0)} ({p.total_memory / 2**30:.1f} GiB, {torch.cuda.device_count()} visible); "
      f"torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

echo "== tests/gpu (pytest -m gpu) =="
t=$(date +%s)
timeout 450 "$PY" -m pytest -q -p no:cacheprovider tests/gpu -m gpu -rfEs --timeout 300 \
    --junitxml "$OUTDIR/gpu_tests.xml" 2>&1 | tee "$OUTDIR/pytest.log"
PYTEST_RC=${PIPESTATUS[0]}
PYTEST_S=$(( $(date +%s) - t ))

echo "== benchmarks/gpu.py --quick =="
t=$(date +%s)
timeout 150 "$PY" benchmarks/gpu.py --quick --batch 128 2>&1 | tee "$OUTDIR/gpu_py.log"
GPUPY_RC=${PIPESTATUS[0]}
GPUPY_S=$(( $(date +%s) - t ))

"$PY" - "$OUTDIR" "$PYTEST_RC" "$PYTEST_S" "$GPUPY_RC" "$GPUPY_S" "$INSTALL_S" "$(( $(date +%s) - T1 ))" <<'EOF'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, pytest_rc, pytest_s, gpupy_rc, gpupy_s, install_s, wall = sys.argv[1:]
out = Path(out)
rows = []
try:
    for case in ET.parse(out / "gpu_tests.xml").getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}.py::{case.get('name')}"
        result, why = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                result = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                why = (el.get("message") or "").splitlines()[0][:90] if el.get("message") else ""
                break
        rows.append((name, result, float(case.get("time", 0)), why))
except (OSError, ET.ParseError) as e:
    print(f"\nno JUnit XML from pytest ({e}); see {out / 'pytest.log'}")

print("\n== gpu_check summary ==")
print((out / "device.txt").read_text().strip() if (out / "device.txt").exists() else "")
if rows:
    width = max(len(r[0]) for r in rows)
    print(f"{'test':<{width}}  {'result':<7}  {'time':>7}")
    for name, result, secs, why in rows:
        print(f"{name:<{width}}  {result:<7}  {secs:6.1f}s" + (f"  {why}" if why and result != "passed" else ""))
    counts = {k: sum(r[1] == k for r in rows) for k in ("passed", "FAILED", "ERROR", "skipped")}
    print(f"pytest: {len(rows)} tests: {counts['passed']} passed, {counts['FAILED']} failed, {counts['ERROR']} errors, "
          f"{counts['skipped']} skipped; {pytest_s} s, exit {pytest_rc}")
else:
    print(f"pytest: exit {pytest_rc} after {pytest_s} s")
print(f"gpu.py --quick: exit {gpupy_rc}, {gpupy_s} s")
log = out / "gpu_py.log"
for line in (log.read_text().splitlines() if log.exists() else []):
    if line.startswith(("device:", "ViT-S", "estimator", "NVML", "torch:", "gpu.py")):
        print(f"  {line}")
extra = f" (+ {install_s} s installing)" if int(install_s) else ""
print(f"total: {int(wall) // 60} min {int(wall) % 60} s{extra}; logs and JUnit XML in {out}")
EOF

[ "$PYTEST_RC" = 0 ] && [ "$GPUPY_RC" = 0 ]
exit $?
