"""A real chest radiograph through every DICOM transfer syntax a PACS sends: does it decode, identically?

Wraps a radiograph (PNG) as a CR DICOM (MONOCHROME2, uncompressed), re-encodes it in a temp folder in
each transfer syntax (JPEG Lossless process 14 and SV1 through GDCM, JPEG-LS and JPEG 2000 through the
dev extra's encoders, RLE and deflate through pydicom), decodes each copy with tbensemble's decoder and
prints, per syntax, the file size and the largest difference in stored values from the original pixels,
and in tbensemble's 8-bit output from the uncompressed copy's.

    python scripts/dicom_codecs.py [IMAGE.png]   # default: the first TBX11K image in shared data
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tbensemble.data.decode import decode_gray
from tbensemble.data.dicom import first_frame, read_header
from tests.data.dicom_files import LOSSY, SYNTAXES, transcode, write_dicom

DEFAULT_IMAGES = Path("/work/shared/data/tbx11k-tb/images")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path, help="a chest radiograph (PNG/JPEG)")
    args = parser.parse_args()
    image = args.image or min(DEFAULT_IMAGES.glob("*.png"))
    pixels = np.asarray(Image.open(image).convert("L"))
    print(f"{image}: {pixels.shape[1]}×{pixels.shape[0]}, 8-bit, wrapped as CR MONOCHROME2")
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        plain = Path(folder) / "plain.dcm"
        write_dicom(plain, pixels, bits=8)
        reference = decode_gray(plain)
        print(f"{'transfer syntax':<92} {'bytes':>8}  stored max|Δ|  8-bit max|Δ|  result")
        for name, uid in SYNTAXES.items():
            target = plain if name == "explicit-le" else transcode(plain, Path(folder) / f"{name}.dcm", name)
            try:
                stored = first_frame(target, read_header(target))
                gray = decode_gray(target)
            except Exception as exc:
                failures += 1
                print(f"{uid.name:<92} {target.stat().st_size:>8}  FAILED: {exc}")
                continue
            stored_diff = int(np.abs(stored.astype(int) - pixels).max())
            gray_diff = int(np.abs(gray.astype(int) - reference).max())
            identical = stored_diff == 0 and gray_diff == 0
            verdict = "identical" if identical else ("lossy, as expected" if name in LOSSY else "DIFFERENT")
            failures += verdict == "DIFFERENT"
            print(f"{uid.name:<92} {target.stat().st_size:>8}  {stored_diff:>13}  {gray_diff:>12}  {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
