#!/usr/bin/env bash
# GPU check of `tbens optimize --target cuda` (issue 10), for a machine with an NVIDIA GPU.
#
# On a copy of an exported run it builds and gates the cuda-fp16 variant of every fold model against fp32
# on the same GPU, then scores the test images with `tbens predict --device cuda` twice (--precision auto,
# which runs the chosen variants, and --precision fp32) and compares the two. Prints the optimize tables
# and "decisions flipped: k of n"; exit status 0 when every step ran (whatever the gate chose), else the
# failing command's status (4: no CUDA).
#
# Usage: scripts/gpu_optimize_check.sh RUN TRAIN_DATA TEST_IMAGES [OUT]
#   e.g. scripts/gpu_optimize_check.sh /work/runs/quickstart /work/runs/demo /work/runs/demo/test gpu-check
# Needs onnxruntime-gpu with CUDA 12 / cuDNN 9 (e.g. the nvidia-*-cu12 wheels) and the optimize extra.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n 2,12p "$0"
  exit 2
fi
run=$1 data=$2 images=$3 out=${4:-gpu-optimize-check}
rm -rf "$out" && mkdir -p "$out"
cp -r "$run" "$out/run"
rm -rf "$out/run/onnx/variants" "$out/run/optimize.json" "$out/run/.optimize.lock"

echo "== tbens optimize --target cuda"
tbens optimize "$out/run" --target cuda --data "$data" --force | tee "$out/optimize.txt"

for precision in auto fp32; do
  echo "== tbens predict --device cuda --precision $precision"
  tbens predict --artifacts "$out/run" --images "$images" --device cuda --precision "$precision" \
    --scale historical --out "$out/$precision.csv" --decisions "$out/$precision.decisions.csv"
done

python - "$out" <<'EOF'
import json
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1])
manifest = json.loads((out / "run" / "manifest.json").read_text())
print("chosen:", {m["name"]: m.get("default_variant", "fp32") for m in manifest["models"]})
auto, fp32 = (pd.read_csv(out / f"{p}.decisions.csv", dtype={"image_id": str}).set_index("image_id") for p in ("auto", "fp32"))
fp32 = fp32.loc[auto.index]
flipped = int((auto["decision"] != fp32["decision"]).sum())
print(f"max |Δ historical score| {float((auto['score'] - fp32['score']).abs().max()):.4f}")
print(f"decisions flipped: {flipped} of {len(auto)}")
EOF
