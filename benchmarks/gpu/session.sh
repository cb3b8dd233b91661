#!/usr/bin/env bash
# Every GPU measurement for one lent-GPU session, most valuable first, each bounded.
#
#   run(command="bash benchmarks/gpu/session.sh", carry=[".whl"], timeout_s=560)
#
# The lent machine has torch and transformers but no network: pydantic and pytest (and
# what they need) come from wheels carried in .whl/ (pip download pydantic pytest
# pytest-timeout -d .whl --python-version 3.12 --only-binary=:all:). Results land in $OUT; copy the tables
# into docs/performance.md.
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH=src LUMINARY_QUIET=1
export OUT=${OUT:-$(mktemp -d)}
python -c "import pydantic" 2>/dev/null || pip install -q --no-index --find-links .whl pydantic
python -c "import pytest, pytest_timeout" 2>/dev/null || pip install -q --no-index --find-links .whl pytest pytest-timeout
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.csv"
python -c "import torch, transformers; print(torch.__version__, transformers.__version__)" > "$OUT/versions.txt"

step() {  # name, seconds, command...: one measurement, its log, its JSON renamed after it
  local name=$1 limit=$2; shift 2
  echo "== $name" | tee -a "$OUT/session.log"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "exit $?" | tee -a "$OUT/session.log"
  tail -n 8 "$OUT/$name.log" | tee -a "$OUT/session.log"
  [ -f "$OUT/train_throughput.json" ] && mv "$OUT/train_throughput.json" "$OUT/$name.json"
}

# 0. float8 on this GPU: the kernel agrees with the dequantized products; all levers compile
step gpu_tests 90 python -m pytest -q -p no:cacheprovider tests/train/test_gpu.py tests/merge/test_gpu.py
# 1. the 90k tokens/s bar (#2): 1B config, compiled; plain, fused head, fused head + float8
step 1b_mb8 300 python benchmarks/gpu/train_throughput.py --only 1b \
  --variants hf_compiled,ours_compiled,ours_compiled_fused,ours_compiled_fused_fp8
# 2. the memory the fused head frees, spent on a larger micro-batch
step 1b_mb16 140 python benchmarks/gpu/train_throughput.py --only 1b --micro-batch 16 \
  --variants ours_compiled_fused,ours_compiled_fused_fp8
ls "$OUT"
