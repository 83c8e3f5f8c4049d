"""Inference speed on this CPU: PyTorch eager against ONNX Runtime and OpenVINO, fp32 and int8, and what int8 costs.

Everything runs in one process and one run, so the figures compare like with like: each timing round
runs every variant once (interleaved), so a busy machine slows them all alike; the tables give the median
(and 90th percentile) over ``--runs`` rounds after ``--warmup`` rounds. Latency is batch 1 at
``--size``; throughput is batch 8.

The model is a trained one (agreement figures on random weights mean nothing):

    python benchmarks/inference.py --model runs/latest            # a model trained with cityseg train
    python benchmarks/inference.py                                # trains U-Net/ResNet34 briefly first

``--explore`` adds the int8 knobs (per-tensor weights, reduce_range, QOperator, fp32 head, calibration
method, opset, graph optimisation level, threads); ``--alternatives`` times other architectures
(random weights: speed only). OpenVINO (the optional extra ``cityseg[openvino]``) runs the same ONNX
files as ONNX Runtime when it is installed. Photos come from ``../shared/data/cityscapes_pairs`` (``--data``): int8 is
calibrated on some and checked on others it never saw, against the fp32 model and the true labels.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cityscapes_pairs"
BATCH = 8  # the throughput batch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="trained model folder, run folder or runs/latest (default: train one briefly)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="Cityscapes pairs (default ../shared/data/...)")
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime (default 2)")
    parser.add_argument("--runs", type=int, default=30, help="timed rounds per variant (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    parser.add_argument("--batch-runs", type=int, default=10, help="timed rounds at batch 8 (default 10)")
    parser.add_argument("--calibration-images", type=int, default=64, help="int8 calibration photos (default 64)")
    parser.add_argument("--check-images", type=int, default=100, help="held-out photos for accuracy (default 100)")
    parser.add_argument("--train-minutes", type=float, default=8.0, help="budget of the brief training (default 8)")
    parser.add_argument("--train-images", type=int, default=600, help="pairs the brief training uses (default 600)")
    parser.add_argument("--explore", action="store_true", help="also time the int8 and runtime knobs")
    parser.add_argument("--alternatives", action="store_true", help="also time other networks (speed only)")
    parser.add_argument("--work", help="folder for ONNX files and the brief training run (default: a temp folder)")
    return parser.parse_args(argv)


# ---- the model ----------------------------------------------------------------------------------


def trained_model(args: argparse.Namespace, work: Path) -> Path:
    """``--model``, or U-Net/ResNet34 trained for ``--train-minutes`` on real pairs with the project's train()."""
    from cityseg.model_sources import resolve_model_dir

    if args.model:
        return resolve_model_dir(args.model)
    from cityseg.config import Config
    from cityseg.training import train

    config = Config()
    config.data.root = args.data
    config.data.size = (args.size, args.size)
    config.data.limit = args.train_images
    config.data.workers = 1
    config.model.arch, config.model.encoder = "unet", "resnet34"
    config.train.budget_minutes = args.train_minutes
    config.train.runs_dir = str(work / "runs")
    print(f"no --model: training U-Net/ResNet34 for {args.train_minutes:g} minutes on {args.train_images} pairs")
    return train(config) / "model"


# ---- timing -------------------------------------------------------------------------------------


def interleaved(variants: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of each call, round-robin over the variants so load changes hit them all alike."""
    for _ in range(warmup):
        for run in variants.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return times


def torch_variants(net, image: np.ndarray) -> dict[str, Callable[[], object]]:
    """Eager fp32, channels-last fp32 and bf16 autocast (channels-last), all under inference_mode."""
    import torch

    x = torch.from_numpy(image)
    x_last = x.contiguous(memory_format=torch.channels_last)
    net_last = _copy(net).to(memory_format=torch.channels_last)

    def eager():
        with torch.inference_mode():
            return net(x)

    def channels_last():
        with torch.inference_mode():
            return net_last(x_last)

    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net_last(x_last)

    return {"PyTorch eager fp32": eager, "PyTorch fp32 channels-last": channels_last, "PyTorch bf16 autocast": bf16}


def _copy(net):
    import copy

    return copy.deepcopy(net).eval()


def ort_runner(path: Path, image: np.ndarray, threads: int, optimization: str = "all") -> Callable[[], object]:
    from cityseg.backends import onnx_session

    session = onnx_session(path, threads=threads, optimization=optimization)
    return lambda: session.run(None, {"image": image})


def openvino_runner(path: Path, image: np.ndarray, threads: int) -> Callable[[], object]:
    from cityseg.backends import OpenVinoBackend

    backend = OpenVinoBackend(path, threads=threads)
    return lambda: backend(image)


def have_openvino() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


RUNTIMES = {"ORT": ort_runner, "OpenVINO": openvino_runner}  # the runtimes of the exported ONNX files


# ---- ONNX variants --------------------------------------------------------------------------------


@dataclasses.dataclass
class Int8Variant:
    name: str
    options: dict  # QuantOptions fields (quantize_int8's settings)
    source: str = "fp32"  # which fp32 graph it quantises
    path: Path | None = None
    agreement: dict[str, float] = dataclasses.field(default_factory=dict)  # per runtime
    miou: dict[str, float | None] = dataclasses.field(default_factory=dict)


def build_onnx(net, info, images, work: Path, explore: bool) -> tuple[dict[str, Path], list[Int8Variant]]:
    """fp32 graphs (opset 17, and 13 with --explore) and the int8 variants quantised from them."""
    from cityseg.onnx_graphs import QuantOptions, quantize_int8, torch_to_onnx

    fp32 = {"fp32": work / "fp32.onnx"}
    if explore:
        fp32["fp32 opset 13"] = work / "fp32-opset13.onnx"
    for name, path in fp32.items():
        torch_to_onnx(net, path, images.check[:1], opset=13 if "13" in name else 17)
    variants = [
        Int8Variant("int8 QDQ per-channel, all layers", {}),
        Int8Variant("int8 QDQ per-channel, encoder fp32", {"keep_fp32": ("/encoder",)}),
        Int8Variant(
            "int8 QDQ per-channel, decoder convolutions only, fp32 outputs",
            {"keep_fp32": ("/encoder",), "op_types": ("Conv",), "fp32_outputs": ("Conv",)},
        ),
    ]
    if explore:
        head = ("/segmentation_head",)
        variants += [
            Int8Variant("int8 QDQ per-tensor", {"per_channel": False}),
            Int8Variant("int8 QDQ per-channel reduce_range", {"reduce_range": True}),
            Int8Variant("int8 QOperator per-channel", {"quant_format": "qoperator"}),
            Int8Variant("int8 QDQ per-channel, head fp32", {"keep_fp32": head}),
            Int8Variant("int8 QDQ per-channel, Resize fp32", {"op_types": ("Conv", "Add", "Concat", "MaxPool")}),
            Int8Variant("int8 QDQ per-channel, percentile calibration", {"calibrate_method": "percentile"}),
            Int8Variant("int8 QDQ per-channel, opset 13", {}, source="fp32 opset 13"),
        ]
    for index, variant in enumerate(variants):
        variant.path = work / f"int8-{index}.onnx"
        started = time.perf_counter()
        quantize_int8(fp32[variant.source], variant.path, images.calibration, QuantOptions(**variant.options))
        print(f"  quantised {variant.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return fp32, variants


def score(
    variants: list[Int8Variant], fp32_path: Path, images, info, threads: int, runtimes: tuple[str, ...]
) -> dict[str, float | None]:
    """Argmax agreement of each int8 variant with fp32 ONNX, and mIoU against the true labels, on held-out photos.

    Each runtime runs the int8 file with its own 8-bit kernels, whose rounding differs, so each is scored.
    """
    from cityseg.backends import BACKENDS
    from cityseg.export import agreement, miou
    from cityseg.inference import labels_at_size

    backends = {"ORT": BACKENDS["onnx"], "OpenVINO": BACKENDS["openvino"]}

    def logits(path: Path, runtime: str = "ORT") -> np.ndarray:
        run = backends[runtime](path, threads=threads)
        return np.concatenate([run(images.check[i : i + 4]) for i in range(0, len(images.check), 4)])

    def truth_miou(scores: np.ndarray) -> float | None:
        if not images.truths:
            return None
        predictions = [labels_at_size(s, t.shape) for s, t in zip(scores, images.truths, strict=True)]
        return miou(predictions, images.truths, info.num_classes)

    reference = logits(fp32_path)
    for variant in variants:
        for runtime in runtimes:
            scores = logits(variant.path, runtime)
            variant.agreement[runtime] = agreement(scores, reference)
            variant.miou[runtime] = truth_miou(scores)
    return {"fp32": truth_miou(reference)}


# ---- lighter architectures (speed only) ----------------------------------------------------------

ALTERNATIVES = (  # (label, create_model keyword arguments)
    ("U-Net / ResNet34 (the default model)", {}),
    ("U-Net / ResNet18", {"arch": "unet", "encoder": "resnet18"}),
    ("U-Net / ResNet34, decoder (128, 64, 32, 16, 8)", {"decoder_channels": (128, 64, 32, 16, 8)}),
    ("FPN / ResNet34", {"arch": "fpn", "encoder": "resnet34"}),
    ("FPN / ResNet18", {"arch": "fpn", "encoder": "resnet18"}),
    ("U-Net / MobileNetV2", {"arch": "unet", "encoder": "mobilenet_v2"}),
    ("U-Net / EfficientNet-Lite0", {"arch": "unet", "encoder": "timm-tf_efficientnet_lite0"}),
)


def alternatives(images, image: np.ndarray, work: Path, args, baseline: Callable[[], object]) -> list[tuple]:
    """Eager fp32 and int8 latency of other networks (random weights), each timed against the baseline."""
    from cityseg.export import quantize_int8, torch_to_onnx
    from cityseg.models import create_model

    rows = []
    for index, (label, options) in enumerate(ALTERNATIVES):
        options = {"arch": "unet", "encoder": "resnet34", **options}
        net = create_model(num_classes=19, **options).eval()
        fp32, int8 = work / f"alt-{index}.onnx", work / f"alt-{index}.int8.onnx"
        torch_to_onnx(net, fp32, image)
        quantize_int8(fp32, int8, images.calibration[:16])
        eager = torch_variants(net, image)["PyTorch eager fp32"]
        runners = {
            "baseline": baseline,
            "eager": eager,
            "ort": ort_runner(fp32, image, args.threads),
            "int8": ort_runner(int8, image, args.threads),
        }
        if "OpenVINO" in args.runtimes:
            runners["openvino int8"] = openvino_runner(int8, image, args.threads)
        times = interleaved(
            runners,
            max(10, args.runs // 2),
            2,
        )
        medians = {k: 1000 * statistics.median(v) for k, v in times.items()}
        rows.append((label, sum(p.numel() for p in net.parameters()) / 1e6, medians))
        print(f"  {label}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()), flush=True)
    return rows


# ---- report -------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    have = set(flags.split(":", 1)[1].split())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")
    return " ".join(flag for flag in wanted if flag in have)


def latency_variants(net, fp32_paths, int8_variants, image, args) -> dict[str, Callable[[], object]]:
    """Batch-1 runners: PyTorch's three, each runtime's fp32 and int8 variants, and the runtime knobs."""
    latency = torch_variants(net, image)
    for runtime in args.runtimes:
        latency[f"{runtime} fp32"] = RUNTIMES[runtime](fp32_paths["fp32"], image, args.threads)
        for variant in int8_variants:
            latency[f"{runtime} {variant.name}"] = RUNTIMES[runtime](variant.path, image, args.threads)
    if args.explore:
        fp32, int8 = fp32_paths["fp32"], int8_variants[0].path
        latency["ORT fp32 opset 13"] = ort_runner(fp32_paths["fp32 opset 13"], image, args.threads)
        latency["ORT fp32, graph optimisation basic"] = ort_runner(fp32, image, args.threads, "basic")
        latency["ORT int8 default, graph optimisation extended"] = ort_runner(int8, image, args.threads, "extended")
        latency["ORT int8 default, graph optimisation basic"] = ort_runner(int8, image, args.threads, "basic")
        latency["PyTorch eager fp32, 1 thread"] = one_thread(latency["PyTorch eager fp32"], args.threads)
        latency["ORT fp32, 1 thread"] = ort_runner(fp32, image, 1)
        latency["ORT int8 default, 1 thread"] = ort_runner(int8, image, 1)
    return latency


def one_thread(run: Callable[[], object], threads: int) -> Callable[[], object]:
    """``run`` with PyTorch on one thread (a process-wide setting, restored after each call)."""
    import torch

    def single():
        torch.set_num_threads(1)
        try:
            return run()
        finally:
            torch.set_num_threads(threads)

    return single


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from cityseg.export import ExportOptions, load_calibration_set
    from cityseg.models import load_model

    torch.set_num_threads(args.threads)
    if not Path(args.data).is_dir():
        print(f"no dataset at {args.data}; pass --data (Cityscapes pairs)", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cityseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = trained_model(args, work)
    net, info = load_model(model_dir)
    info = dataclasses.replace(info, input_size=(args.size, args.size))  # fully convolutional: any size runs
    print(f"model {model_dir}: {info.arch}/{info.encoder}, {info.num_classes} classes; work folder {work}")

    started = time.perf_counter()
    options = ExportOptions(
        calibration=args.data, pairs=True, calibration_images=args.calibration_images, check_images=args.check_images
    )
    images = load_calibration_set(info, options, model_dir)
    seconds = time.perf_counter() - started
    print(f"read {len(images.calibration)} calibration + {len(images.check)} held-out photos in {seconds:.0f} s")
    args.runtimes = ("ORT", "OpenVINO") if have_openvino() else ("ORT",)
    if len(args.runtimes) == 1:
        print("OpenVINO is not installed (pip install 'cityseg[openvino]'): timing ONNX Runtime only")
    fp32_paths, int8_variants = build_onnx(net, info, images, work, args.explore)
    fp32_miou = score(int8_variants, fp32_paths["fp32"], images, info, args.threads, args.runtimes)["fp32"]

    load_before = os.getloadavg()[0]
    image = images.check[:1]  # (1, 3, size, size): a real photo
    latency = latency_variants(net, fp32_paths, int8_variants, image, args)
    print(f"timing {len(latency)} variants: {args.warmup} warm-up + {args.runs} rounds at batch 1", flush=True)
    times = interleaved(latency, args.runs, args.warmup)

    batch = np.ascontiguousarray(np.concatenate([images.check] * BATCH)[:BATCH])  # (8, 3, size, size)
    throughput = torch_variants(net, batch)
    throughput.pop("PyTorch bf16 autocast")
    for runtime in args.runtimes:
        fastest_int8 = min(int8_variants, key=lambda v: statistics.median(times[f"{runtime} {v.name}"]))
        throughput[f"{runtime} fp32"] = RUNTIMES[runtime](fp32_paths["fp32"], batch, args.threads)
        throughput[f"{runtime} {fastest_int8.name}"] = RUNTIMES[runtime](fastest_int8.path, batch, args.threads)
    print(f"timing batch {BATCH}: {args.batch_runs} rounds", flush=True)
    batch_times = interleaved(throughput, args.batch_runs, 1)
    load = (load_before, os.getloadavg()[0])

    rows = alternatives(images, image, work, args, latency["PyTorch eager fp32"]) if args.alternatives else []
    print_report(args, info, images, int8_variants, fp32_miou, times, batch_times, rows, load, argv)
    return 0


def print_report(args, info, images, int8_variants, fp32_miou, times, batch_times, rows, load, argv) -> None:
    """The markdown for BENCHMARKS.md."""
    import onnxruntime
    import torch

    openvino = ""
    if "OpenVINO" in args.runtimes:
        import openvino as ov

        openvino = f", openvino {ov.__version__}"

    eager = statistics.median(times["PyTorch eager fp32"])
    accuracy = {(f"{runtime} {v.name}", runtime): v for v in int8_variants for runtime in args.runtimes}
    print()
    print(
        f"## Inference\n\n{cpu_name()} ({cpu_flags()}), {args.threads} threads; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}{openvino}. "
        f"Model {info.arch}/{info.encoder}, {info.num_classes} classes, "
        f"{args.size}x{args.size}. Median of {args.runs} interleaved rounds after {args.warmup} warm-up; "
        f"1-minute load average {load[0]:.1f} before timing, {load[1]:.1f} after."
    )
    print(
        f"Accuracy on {len(images.check)} held-out photos, never used in calibration ({len(images.calibration)} "
        f"calibration photos); fp32 mIoU against the true labels: {_pct(fp32_miou)}.\n"
    )
    print(
        "| variant (batch 1) | median ms | p90 ms | min ms | speed-up vs eager fp32 (median) | agreement with fp32 "
        "| mIoU (delta) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        median, p90 = 1000 * statistics.median(values), 1000 * float(np.percentile(values, 90))
        fastest = 1000 * min(values)
        runtime = name.split(" ", 1)[0]
        variant = accuracy.get((name, runtime))
        agree = f"{100 * variant.agreement[runtime]:.2f}%" if variant else ""
        quality = ""
        if variant and variant.miou[runtime] is not None and fp32_miou is not None:
            quality = f"{_pct(variant.miou[runtime])} ({100 * (variant.miou[runtime] - fp32_miou):+.2f})"
        speedup = 1000 * eager / median
        print(f"| {name} | {median:.1f} | {p90:.1f} | {fastest:.1f} | {speedup:.2f}x | {agree} | {quality} |")
    print(f"\n| variant (batch {BATCH}) | median ms per batch | images/s | vs eager fp32 |")
    print("|---|---:|---:|---:|")
    batch_eager = statistics.median(batch_times["PyTorch eager fp32"])
    for name, values in batch_times.items():
        median = statistics.median(values)
        print(f"| {name} | {1000 * median:.0f} | {BATCH / median:.1f} | {batch_eager / median:.2f}x |")
    if rows:
        print(
            "\n| other network (random weights: speed only) | M params | eager fp32 ms | ORT fp32 ms | ORT int8 ms "
            "| OpenVINO int8 ms | fastest int8 vs its own eager fp32 |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, params, m in rows:
            fastest = min(m["int8"], m.get("openvino int8", float("inf")))
            openvino = f"{m['openvino int8']:.1f}" if "openvino int8" in m else "n/a"
            print(
                f"| {label} | {params:.1f} | {m['eager']:.1f} | {m['ort']:.1f} | {m['int8']:.1f} | {openvino} "
                f"| {m['eager'] / fastest:.2f}x |"
            )
    print(f"\ncommand: python benchmarks/inference.py {' '.join(sys.argv[1:] if argv is None else argv)}")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


if __name__ == "__main__":
    sys.exit(main())
