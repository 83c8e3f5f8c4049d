"""Cold start: from a fresh process to the written overlay of one street photo, with the built-in model.

Each variant runs ``--runs`` times in a new process (the median is reported), on one photo of a held-out city:

    cli            cityseg predict NAME photo.jpg --out DIR          (default backend: auto = ONNX Runtime)
    cli-torch      the same with --backend torch                     (the PyTorch path, for the ratio)
    python         Segmenter.from_pretrained(NAME) in Python, then the overlay written
    python-torch   the same with backend="torch"

The network is off (``HF_HUB_OFFLINE=1``) and nothing is cached beforehand beyond what ``pip install`` wrote:
the Python bytecode of the installed packages (a fresh install compiles it once, as pip does).
Every variant is timed in the same run, so the ratios hold on a machine whose absolute speed drifts.

Usage:
    python benchmarks/cold_start.py [--photo FILE] [--runs 5] [--model cityscapes-fpn-lite0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs" / "train"
PYTHON_PREDICT = """
import sys
from cityseg.engine import Segmenter
from cityseg.outputs import colour_image, overlay_image
segmenter = Segmenter.from_pretrained(sys.argv[1], backend=sys.argv[2])
photo = segmenter.open(sys.argv[3])
labels = segmenter.predict_photos([photo])[0][0]
overlay_image(photo.image, colour_image(labels, segmenter.class_set)).save(sys.argv[4], quality=90)
print("torch" in sys.modules)
"""


def default_photo(scratch: Path) -> Path:
    """The photo half of a pair of a held-out city (bremen), as a JPEG a user would have."""
    from PIL import Image

    image = Image.open(DATA / "300.jpg")  # the release's order: pairs 271-586 are bremen
    photo = scratch / "street.jpg"
    image.crop((0, 0, image.width // 2, image.height)).save(photo, quality=95)
    return photo


def timed(command: list[str], env: dict) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="cityscapes-fpn-lite0")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cityseg = str(Path(sys.executable).with_name("cityseg"))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        photo = args.photo or default_photo(scratch)
        variants = {
            "cli": [cityseg, "predict", args.model, str(photo), "--out", str(scratch / "a"), "--no-progress"],
            "cli-torch": [
                cityseg,
                "predict",
                args.model,
                str(photo),
                "--out",
                str(scratch / "b"),
                "--backend",
                "torch",
            ],
            "python": [sys.executable, "-c", PYTHON_PREDICT, args.model, "auto", str(photo), str(scratch / "c.jpg")],
            "python-torch": [
                sys.executable,
                "-c",
                PYTHON_PREDICT,
                args.model,
                "torch",
                str(photo),
                str(scratch / "d.jpg"),
            ],
        }
        for command in variants.values():  # once each first: bytecode compiled, files in the page cache
            subprocess.run(command, check=True, env=env, capture_output=True)
        seconds = {name: [] for name in variants}
        for _ in range(args.runs):  # interleaved, so drift touches every variant alike
            for name, command in variants.items():
                seconds[name].append(timed(command, env))
        torch_loaded = subprocess.run(variants["python"], env=env, capture_output=True, text=True, check=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    report = {
        "photo": str(photo.name),
        "runs": args.runs,
        "median_s": {k: round(v, 2) for k, v in medians.items()},
        "all_s": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
        "torch_imported_by_python_auto": torch_loaded.stdout.strip() == "True",
        "torch_over_auto_cli": round(medians["cli-torch"] / medians["cli"], 2),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
