"""Labelling benchmark: how much labelling the real pairs costs over merely decoding them.

Measures, on ``../shared/data/cityscapes_pairs/train`` (all 2975 pairs by default):

- the floor: reading and decoding every JPEG, nothing else (one process);
- palette labelling of every image, decode included, with ``--workers`` processes and the label cache
  disabled (``use_cache=False``: every label is computed, nothing is read from or written to disk);
- the same with a fresh temporary cache, then again from that cache (what a second run costs);
- per mask in one process, on the same images: decoding a pair (``read_pair``) against labelling its
  mask already in memory, best of 3 passes (less sensitive to other jobs than the pool's wall time),
  and building the labeller's 16 MiB colour table;
- the original project's per-image cost: scikit-learn ``KMeans(10).fit`` on a pixel sample, then
  ``KMeans.predict`` on each mask's 65536 pixels;
- peak memory of labelling 300 and all images (fresh processes; the parent's and the workers' peak RSS),
  which must not grow with the number of images.

Prints a markdown table and writes it, with the command and the machine, to the "## Labelling" section of
BENCHMARKS.md (other sections are kept).

Usage:
    python benchmarks/labelling.py [--workers 2] [--limit N] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cityscapes_pairs" / "train"
BENCHMARKS = ROOT / "BENCHMARKS.md"
SECTION = "## Labelling"


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = Path("/proc/driver/nvidia/gpus")
    gpu = f"{len(list(gpus.iterdir()))} NVIDIA GPU(s)" if gpus.is_dir() else "no GPU"
    return f"{os.cpu_count()}-core CPU ({model}), {gpu}, Python {platform.python_version()}, numpy {np.__version__}"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the labelling workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def decode_all(paths) -> tuple[float, float]:
    """(wall, CPU) seconds to read and decode every pair image."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    for path in paths:
        with Image.open(path) as image:
            image.load()
            np.asarray(image)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def label_all(paths, workers: int, cache_dir=None, use_cache: bool = False) -> tuple[float, float, object]:
    """(wall, CPU) seconds to label every image (decode included), and the LabelReport."""
    from cityseg.labels import PaletteLabeller, label_dataset

    wall, cpu = time.perf_counter(), cpu_seconds()
    report = label_dataset(
        paths, PaletteLabeller(), cache_dir=cache_dir, workers=workers, use_cache=use_cache, progress=False
    )
    return time.perf_counter() - wall, cpu_seconds() - cpu, report


def per_mask(paths, count: int, passes: int = 3) -> tuple[float, float, float]:
    """(ms per pair to decode it, ms per mask to label it in memory, seconds to build the colour table), 1 process.

    Each figure is the best of ``passes`` passes over the same ``count`` images: other jobs on the machine
    can only slow a pass down, so the fastest is the closest to the code's own cost.
    """
    from cityseg import labels
    from cityseg.pairs import read_pair

    paths = paths[:count]
    labels._TABLES.clear()  # time building the table, as a fresh worker process would
    start = time.perf_counter()
    palette = labels.PaletteLabeller().prepare()
    build = time.perf_counter() - start
    decode, label = [], []
    for _ in range(passes):
        start = time.perf_counter()
        masks = [read_pair(path)[1] for path in paths]
        decode.append((time.perf_counter() - start) / len(paths) * 1000)
        start = time.perf_counter()
        for mask in masks:
            palette.label(mask)
        label.append((time.perf_counter() - start) / len(masks) * 1000)
    return min(decode), min(label), build


def kmeans_per_image(paths, count: int) -> tuple[float, float]:
    """(fit seconds, ms per mask for KMeans.predict), masks in memory."""
    from sklearn.cluster import KMeans

    from cityseg.pairs import read_pair

    masks = [read_pair(path)[1] for path in paths[:count]]
    rng = np.random.default_rng(0)
    sample = np.concatenate([m.reshape(-1, 3)[rng.choice(m.shape[0] * m.shape[1], 2000)] for m in masks])
    start = time.perf_counter()
    model = KMeans(n_clusters=10, n_init=10, random_state=0).fit(sample.astype(np.float64))  # as the original
    fit = time.perf_counter() - start
    start = time.perf_counter()
    for mask in masks:
        model.predict(mask.reshape(-1, 3).astype(np.float64))
    predict = (time.perf_counter() - start) / len(masks) * 1000
    return fit, predict


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, since ru_maxrss keeps the launching process's peak across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def memory_run(count: int, workers: int) -> None:
    """Child mode: label ``count`` images and print peak resident memory (MiB) of this process and its workers."""
    from cityseg.pairs import discover

    paths = discover(DATA.parent, "train")["train"][:count]
    *_, report = label_all(paths, workers)
    own = peak_rss_mib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker (forked here)
    print(json.dumps({"images": report.count, "parent_mib": own, "worker_mib": children}))


def measure_memory(count: int, workers: int) -> dict:
    command = [sys.executable, __file__, "--memory-run", str(count), "--workers", str(workers)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_section(text: str, machine_line: str) -> None:
    """Replace (or add) our section of BENCHMARKS.md, keeping the others; add the Machine line if missing."""
    from cityseg.files import atomic_write_text

    current = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    lines = current.splitlines()
    first_section = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    if not any(line.startswith("Machine:") for line in lines[:first_section]):
        lines[1:1] = ["", machine_line]
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = [*text.rstrip().splitlines(), ""]
    else:
        lines += ["", *text.rstrip().splitlines()]
    atomic_write_text(BENCHMARKS, "\n".join(lines).rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="labelling processes (default 2)")
    parser.add_argument("--limit", type=int, default=0, help="use the first N images only (default all)")
    parser.add_argument("--mask-images", type=int, default=200, help="images for the per-mask and K-Means rows")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--memory-run", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        memory_run(args.memory_run, args.workers)
        return
    if not DATA.is_dir():
        sys.exit(f"no real pairs at {DATA}; this benchmark needs ../shared/data/cityscapes_pairs/train")

    from cityseg.pairs import discover

    paths = discover(DATA.parent, "train")["train"]
    paths = paths[: args.limit] if args.limit else paths
    n = len(paths)
    start_load = os.getloadavg()[0]
    print(f"Machine: {machine()}; load average at start {start_load:.1f}", flush=True)

    decode_all(paths[:50])  # warm the page cache so both timings read from memory
    decode, decode_cpu = decode_all(paths)
    print(f"decode {n}: {decode:.2f} s (CPU {decode_cpu:.2f} s)", flush=True)
    label, label_cpu, report = label_all(paths, args.workers)
    print(f"palette label {n} (no cache, {args.workers} workers): {label:.2f} s (CPU {label_cpu:.2f} s)", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        fill, *_ = label_all(paths, args.workers, cache_dir=cache, use_cache=True)
        reread, *_ = label_all(paths, args.workers, cache_dir=cache, use_cache=True)
    print(f"with a fresh cache: {fill:.2f} s, from that cache: {reread:.2f} s", flush=True)
    decode_one, label_one, build = per_mask(paths, args.mask_images)
    print(f"per mask: decode {decode_one:.2f} ms, label {label_one:.2f} ms; table {build:.2f} s", flush=True)
    fit, predict = kmeans_per_image(paths, args.mask_images)
    print(f"kmeans fit {fit:.2f} s, predict {predict:.2f} ms/mask", flush=True)
    small = measure_memory(min(300, n), args.workers)
    full = measure_memory(n, args.workers)
    print(f"memory: {small} vs {full}", flush=True)

    ratio = label / decode
    rows = [
        (
            "decode all JPEGs (the floor), 1 process",
            f"{decode:.2f} s",
            f"{decode / n * 1000:.2f} ms/image; CPU {decode_cpu:.2f} s",
        ),
        (
            f"palette labelling, decode included, --workers {args.workers}, cache disabled",
            f"{label:.2f} s",
            f"{ratio:.2f}x decode (goal <= 3x, <= 15 s); CPU {label_cpu:.2f} s in all processes,"
            f" {label_cpu / args.workers:.2f} s per worker if each had a free core",
        ),
        (f"same, filling a fresh cache (temp dir), --workers {args.workers}", f"{fill:.2f} s", "writes .npy"),
        (f"same, all from that cache, --workers {args.workers}", f"{reread:.2f} s", "second run"),
        (
            "per pair, 1 process: decode (`read_pair`)",
            f"{decode_one:.2f} ms/pair",
            f"{args.mask_images} images, best of 3 passes",
        ),
        (
            "per mask, 1 process: palette labeller, mask in memory",
            f"{label_one:.2f} ms/mask",
            f"same images and passes: {label_one / decode_one:.2f}x decoding",
        ),
        ("building the palette labeller's colour table", f"{build:.2f} s", "once per run, before the workers fork"),
        (
            "original project: KMeans(10).predict on 65536 pixels",
            f"{predict:.2f} ms/mask",
            f"{args.mask_images} masks; KMeans(10, n_init=10).fit on {args.mask_images * 2000} px: {fit:.1f} s",
        ),
        (
            f"peak memory labelling {small['images']} images",
            f"parent {small['parent_mib']:.0f} MiB, worker {small['worker_mib']:.0f} MiB",
            "peak RSS (VmHWM; workers: getrusage), fresh process",
        ),
        (
            f"peak memory labelling {full['images']} images",
            f"parent {full['parent_mib']:.0f} MiB, worker {full['worker_mib']:.0f} MiB",
            "peak RSS (VmHWM; workers: getrusage), fresh process",
        ),
    ]
    table = "\n".join(
        ["| measurement | result | note |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    )
    print(table)
    command = "python benchmarks/labelling.py" + (f" --workers {args.workers}" if args.workers != 2 else "")
    command += f" --limit {args.limit}" if args.limit else ""
    text = f"""{SECTION}

Command: `{command}` (real pairs: `../shared/data/cityscapes_pairs/train`, {n} images, 512x256 JPEG).
Load average (1 min) {start_load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: other jobs shared the 2 cores.

{table}

Labelling timings have the label cache disabled (`use_cache=False`: every label is computed, the cache is
neither read nor written) and include building the 16 MiB colour table once ({build:.2f} s); the two
cache rows use a fresh temporary folder. Wall-clock times depend on what else runs: with the 2 cores shared
(load {start_load:.1f}), the workers had less than two free cores, so the CPU seconds and the per-mask rows are
the comparable figures. Labelling (decoding, labelling and counting each image) took {label_cpu:.1f} s of CPU,
{label_cpu / decode_cpu:.1f}x the CPU of decoding alone: spread over {args.workers} free cores that is about
{label_cpu / args.workers:.1f} s, {label_cpu / args.workers / decode_cpu:.1f}x the decode floor. In one process,
labelling a mask costs {label_one / decode_one:.2f}x decoding its pair ({label_one:.2f} against
{decode_one:.2f} ms). Memory stays flat from {small["images"]} to {full["images"]} images: labels are streamed,
classes are counted with `np.bincount` per image.

Classes over the {n} images (train19): road {100 * report.frequencies()[0]:.1f}% of pixels, building
{100 * report.frequencies()[2]:.1f}%, vegetation {100 * report.frequencies()[8]:.1f}%, car
{100 * report.frequencies()[13]:.1f}%, void {100 * report.ignored_pixels / report.total_pixels:.1f}%.
The class-frequency table (`cityseg label` prints the same):

```
{report.table()}
```
"""
    if not args.no_write:
        write_section(text, f"Machine: {machine()}.")
        print(f"wrote {BENCHMARKS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
