"""Backends: what runs a saved model, PyTorch, ONNX Runtime or OpenVINO, behind one call.

Each backend maps a (B, 3, h, w) float32 batch to (B, C, h, w) float32 logits, and loads itself from a
model folder (:meth:`TorchBackend.from_model_dir` ...); :data:`BACKENDS` names them all. A model folder
(``models.save_model``) may also hold the ONNX files ``cityseg export`` writes::

    model/config.json, model.safetensors, cityseg.json    the PyTorch model and what it predicts
    model/model.onnx         fp32, dynamic batch and image size
    model/model.int8.onnx    int8 (static, per-channel, QDQ), written only if it agrees with fp32
    model/export.json        the figures of the checks each export passed

``onnx`` (ONNX Runtime) and ``openvino`` (OpenVINO, the optional extra ``cityseg[openvino]``) run
``model.int8.onnx`` when it is there, else ``model.onnx`` (or the file named by ``onnx_file``). ``auto``, the
default, runs ``model.onnx`` in ONNX Runtime when there is one, else PyTorch (:func:`choose_backend`).

Example:
    >>> backend, info = BACKENDS["onnx"].from_model_dir(Path("runs/latest/model"))  # doctest: +SKIP
    >>> backend(batch).shape  # (B, C, h, w)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cityseg.errors import CitysegError, first_line
from cityseg.extras import require, require_module
from cityseg.run_folders import INFO_FILE

if TYPE_CHECKING:  # numpy and torch are imported where they run: the CLI reads BACKENDS without them
    import numpy as np

    from cityseg.models import ModelInfo

ONNX_FILE = "model.onnx"  # fp32 ONNX export, beside the safetensors weights in the model folder
INT8_ONNX_FILE = "model.int8.onnx"  # int8 export; preferred by the ONNX backends when present
EXPORT_REPORT_FILE = "export.json"  # what the export checked, and the figures


def read_model_info(model_dir: str | os.PathLike) -> ModelInfo:
    """The :class:`~cityseg.models.ModelInfo` of a model folder, read from its ``cityseg.json``."""
    import json

    from cityseg.models import ModelInfo

    path = Path(model_dir) / INFO_FILE
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise CitysegError(f"{path} not found; the model folder is incomplete, save or train it again") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CitysegError(f"cannot read {path} ({exc}); the file is damaged, save or train it again") from None
    if not isinstance(values, dict):
        raise CitysegError(f"{path} is not a JSON object; the file is damaged, save or train it again")
    return ModelInfo.from_dict(values, source=str(path))


def find_onnx_file(model_dir: Path, onnx_file: str | os.PathLike | None = None) -> Path:
    """The ONNX file to run: ``onnx_file`` (a path, or a name inside the model folder), else int8, else fp32."""
    if onnx_file is not None:
        candidate = Path(onnx_file)
        if not candidate.is_file() and (model_dir / candidate).is_file():
            candidate = model_dir / candidate
        if not candidate.is_file():
            raise CitysegError(f"ONNX file {onnx_file} not found; run cityseg export {model_dir} --format onnx")
        return candidate
    for name in (INT8_ONNX_FILE, ONNX_FILE):
        if (model_dir / name).is_file():
            return model_dir / name
    raise CitysegError(f"no {ONNX_FILE} in {model_dir}; run cityseg export {model_dir} --format onnx first")


class TorchBackend:
    """Runs a PyTorch network: (B, 3, h, w) float32 -> (B, C, h, w) float32 logits, in inference mode."""

    name = "torch"
    needs_torch = True

    def __init__(self, net):
        self.net = net.eval()

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, onnx_file: str | os.PathLike | None = None, threads: int | None = None
    ) -> tuple[TorchBackend, ModelInfo]:
        """The safetensors weights of ``model_dir``; ``threads`` sets ``torch.set_num_threads`` (process-wide).

        ``onnx_file`` is not used (it is there so every backend loads alike).
        """
        import torch

        from cityseg.models import load_model

        if threads:
            torch.set_num_threads(int(threads))
        net, info = load_model(model_dir)
        return cls(net), info

    def __str__(self) -> str:
        return "PyTorch"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).float().numpy()


class OnnxFileBackend:
    """What the backends that run an exported ONNX file share: loading one from a model folder."""

    path: Path
    needs_torch = False  # the engine then resizes and normalises with Pillow and NumPy: no torch import at all

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, onnx_file: str | os.PathLike | None = None, threads: int | None = None
    ) -> tuple[OnnxFileBackend, ModelInfo]:
        """The ONNX file of ``model_dir`` (see :func:`find_onnx_file`) and the folder's ModelInfo.

        Raises:
            CitysegError: no ONNX file, a damaged one, or one whose output has other classes than the info.
        """
        info = read_model_info(model_dir)
        runner = cls(find_onnx_file(model_dir, onnx_file), threads=threads)
        channels = runner.num_classes()
        if channels is not None and channels != info.num_classes:
            raise CitysegError(
                f"{runner.path} outputs {channels} classes but {model_dir / INFO_FILE} lists {info.num_classes}; "
                f"export the model again (cityseg export {model_dir} --format onnx)"
            )
        return runner, info

    def num_classes(self) -> int | None:
        """Channels of the output, None when the graph leaves them dynamic."""
        raise NotImplementedError


class OnnxBackend(OnnxFileBackend):
    """Runs an ONNX file in ONNX Runtime (CPU): (B, 3, h, w) float32 -> (B, C, h, w) float32 logits."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.session = onnx_session(self.path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def __str__(self) -> str:
        return f"ONNX Runtime ({self.path.name})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def num_classes(self) -> int | None:
        channels = self.session.get_outputs()[0].shape[1]
        return channels if isinstance(channels, int) else None


class OpenVinoBackend(OnnxFileBackend):
    """Runs an ONNX file in OpenVINO (CPU): (B, 3, h, w) float32 -> (B, C, h, w) float32 logits.

    OpenVINO reads the same ONNX files as ONNX Runtime, int8 QDQ files included, and runs their 8-bit
    convolutions with its own kernels. Inference precision is pinned to f32: on CPUs with bf16 units
    OpenVINO would otherwise compute the fp32 model in bf16, and the answers would no longer be fp32's.
    """

    name = "openvino"
    extra = "openvino"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import openvino  # load_backend has checked that the extra is installed

        self.path = Path(path)
        if not self.path.is_file():
            raise CitysegError(f"ONNX file {self.path} not found; run cityseg export first")
        settings: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            settings["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = openvino.Core()
            self.model = core.compile_model(core.read_model(str(self.path)), "CPU", settings)
        except Exception as exc:  # OpenVINO raises RuntimeError with a multi-line report
            problem = first_line(exc)
            raise CitysegError(f"cannot load {self.path}: {problem}; the file is damaged, export it again") from None
        self.request = self.model.create_infer_request()

    def __str__(self) -> str:
        return f"OpenVINO ({self.path.name})"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: batch})[0].copy()  # the request reuses its output buffer

    def num_classes(self) -> int | None:
        channels = self.model.outputs[0].get_partial_shape()[1]
        return channels.get_length() if channels.is_static else None


BACKENDS = {backend.name: backend for backend in (TorchBackend, OnnxBackend, OpenVinoBackend)}
AUTO = "auto"  # the default: the fastest backend that gives fp32's answers (choose_backend)
BACKEND_CHOICES = (AUTO, *BACKENDS)


def choose_backend(model_dir: Path) -> tuple[str, str | None]:
    """What ``auto`` runs: ``(backend, ONNX file)``.

    ONNX Runtime on the folder's fp32 ``model.onnx`` when both are there: it starts in a fraction of torch's
    import time and gives the same answers (an int8 file is never chosen for you: ask for ``--backend onnx``).
    Else PyTorch on the safetensors weights.
    """
    import importlib.util

    if (model_dir / ONNX_FILE).is_file() and importlib.util.find_spec("onnxruntime") is not None:
        return OnnxBackend.name, ONNX_FILE
    return TorchBackend.name, None


def load_backend(backend: str, model_dir: Path, onnx_file: str | os.PathLike | None = None, threads: int | None = None):
    """``(backend, ModelInfo)`` of the model folder ``model_dir`` run by the backend named ``backend``.

    Raises:
        CitysegError: an unknown backend, or the backend's own loading errors.
    """
    if backend == AUTO:
        backend, chosen_file = choose_backend(model_dir) if onnx_file is None else (OnnxBackend.name, onnx_file)
        onnx_file = chosen_file
    if backend not in BACKENDS:
        raise CitysegError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKEND_CHOICES)}")
    runner = BACKENDS[backend]
    if getattr(runner, "extra", None):
        require(runner.extra, f"the {backend} backend")
    return runner.from_model_dir(model_dir, onnx_file=onnx_file, threads=threads)


def onnx_session(path: str | os.PathLike, threads: int | None = None, optimization: str = "all", **options: Any):
    """An ONNX Runtime CPU session with full graph optimisation; ``threads`` intra-op threads (None: all cores).

    Args:
        path: the .onnx file.
        threads: intra-op threads; inter-op parallelism stays at 1 (one convolution at a time is fastest here).
        optimization: ``disable``, ``basic``, ``extended`` or ``all`` (ONNX Runtime's graph optimisation levels).
        **options: further ``SessionOptions`` attributes (e.g. ``enable_profiling=True``).

    Raises:
        CitysegError: the file is missing or not a model ONNX Runtime can load.
    """
    require_module("onnxruntime", "ONNX Runtime")  # in the core install, not an extra; a broken install gets a line
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    settings = ort.SessionOptions()
    settings.graph_optimization_level = levels[optimization]
    settings.intra_op_num_threads = int(threads or 0)
    settings.inter_op_num_threads = 1
    settings.log_severity_level = 3  # errors only: the CPU provider's notes about layout changes are noise here
    for key, value in options.items():
        setattr(settings, key, value)
    path = Path(path)
    if not path.is_file():
        raise CitysegError(f"ONNX file {path} not found; run cityseg export first")
    try:
        return ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
        raise CitysegError(f"cannot load {path}: {first_line(exc)}; the file is damaged, export it again") from None
