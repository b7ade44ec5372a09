#!/usr/bin/env bash
# Edge install check: a fresh virtual environment with `pip install .` (no `train` extra, so no
# TensorFlow) runs `tbens predict` on an exported run's onnx/ + manifest.json, copied alone.
#   scripts/edge_smoke.sh artifacts/quickstart [IMAGES_DIR] [DICOM_DIR]
# Without IMAGES_DIR (or with "") it scores a few generated PNGs. DICOM_DIR holds plain.dcm and copies of
# it in other transfer syntaxes (NAME.dcm; lossy ones named *near-lossless* or jpeg2000.dcm): each must
# decode in the edge environment like plain.dcm. Exits non-zero when TensorFlow or the GPL codec
# pylibjpeg-libjpeg is importable in the edge environment, a DICOM fails, or predict fails.
set -euo pipefail
run=$(cd "${1:?usage: scripts/edge_smoke.sh RUN_DIR [IMAGES_DIR]}" && pwd)
images=${2:-}
dicoms=${3:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Build from the checkout's own files only (no build/, .venv or artifacts left in the working tree).
mkdir "$work/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard | tar -C "$repo" --null -T - -cf - | tar -xf - -C "$work/src"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$work/src"
cd "$work"  # away from the checkout, so only the installed package can be imported

if "$work/venv/bin/python" -c "import tensorflow" 2>/dev/null; then
  echo "edge_smoke: FAIL: tensorflow is importable in the edge environment" >&2
  exit 1
fi

if "$work/venv/bin/python" -c "import libjpeg" 2>/dev/null; then
  echo "edge_smoke: FAIL: the GPL codec pylibjpeg-libjpeg is installed in the edge environment" >&2
  exit 1
fi

if [[ -n "$dicoms" ]]; then
  "$work/venv/bin/python" - "$dicoms" <<'PY'
import sys
from pathlib import Path

import numpy as np
import pydicom

from tbensemble.data.decode import decode_gray

folder = Path(sys.argv[1])
reference = decode_gray(folder / "plain.dcm")
copies = sorted(p for p in folder.glob("*.dcm") if p.name != "plain.dcm")
for path in copies:
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    difference = int(np.abs(decode_gray(path).astype(int) - reference).max())
    allowed = 2 if "near-lossless" in path.name or path.name == "jpeg2000.dcm" else 0
    assert difference <= allowed, (path.name, difference)
    print(f"edge_smoke: {syntax.name}: decoded, max |diff| {difference}")
print(f"edge_smoke: OK: {len(copies)} transfer syntaxes decoded")
PY
fi

mkdir -p "$work/artifacts"
cp -r "$run/onnx" "$run/manifest.json" "$work/artifacts/"
if [[ -z "$images" ]]; then
  images="$work/images"
  "$work/venv/bin/python" - "$images" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

folder = Path(sys.argv[1])
folder.mkdir()
rng = np.random.default_rng(0)
for i in range(3):
    Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8)).save(folder / f"test{i + 1}.png")
PY
fi

"$work/venv/bin/tbens" predict --artifacts "$work/artifacts" --images "$images" --out "$work/submission.csv" --device cpu
"$work/venv/bin/python" - "$work/submission.csv" "$images" <<'PY'
import sys

import pandas as pd

from tbensemble.data.layout import list_images

frame = pd.read_csv(sys.argv[1], dtype={"image_id": str})
expected = len(list_images(sys.argv[2]))
assert len(frame.columns) == 2, list(frame.columns)
assert len(frame) == expected, (len(frame), expected)
assert "tensorflow" not in sys.modules
print(f"edge_smoke: OK: {len(frame)} rows scored without TensorFlow")
PY
