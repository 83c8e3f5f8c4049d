"""The ONNX graphs: a PyTorch network exported as fp32 ONNX, and static int8 quantisation of that file.

:mod:`cityseg.export` runs both and checks what they give before anything is installed; the benchmarks
call them directly to compare variants.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cityseg.defaults import CALIBRATION_METHODS, DEFAULT_OPSET, QUANT_FORMATS
from cityseg.errors import CitysegError, first_line


def torch_to_onnx(
    net, path: str | os.PathLike, sample: np.ndarray, opset: int = DEFAULT_OPSET, fold: bool = True
) -> None:
    """Write ``net`` as an fp32 ONNX graph: input ``image`` (batch, 3, height, width), output ``logits``.

    The TorchScript-based exporter is used: it names the dynamic axes, exports a U-Net in seconds, and its
    graphs pass ONNX Runtime's symbolic shape inference (needed by ``quant_pre_process``), which the
    torch.export-based exporter's graphs did not. Eval mode lets constant folding merge every BatchNorm into
    the convolution before it.

    Args:
        net: the network; put in eval mode.
        path: the .onnx file to write.
        sample: one (1, 3, h, w) float32 input to trace with.
        opset: ONNX opset.
        fold: fold constants (BatchNorm into convolutions ...); without it the graph's weights keep the
            network's own names and values (``encoder.conv_stem.weight`` ...), so they can be read from its
            safetensors file (the built-in model's ``model.onnx`` does), and ONNX Runtime folds them at load.
    """
    import torch

    net.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are about PyTorch, not the user
        try:
            torch.onnx.export(
                net,
                (torch.from_numpy(sample),),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={
                    "image": {0: "batch", 2: "height", 3: "width"},
                    "logits": {0: "batch", 2: "height", 3: "width"},
                },
                do_constant_folding=fold,
            )
        except Exception as exc:
            raise CitysegError(f"ONNX export failed: {first_line(exc)}; try another --opset") from None


@dataclass(frozen=True)
class QuantOptions:
    """How :func:`quantize_int8` quantises (``cityseg export``'s choices, see :class:`cityseg.export.ExportOptions`).

    Args:
        per_channel: one int8 scale per output channel of each weight (else one per tensor).
        reduce_range: 7-bit weights (for CPUs whose u8 x s8 products can overflow: pre-VNNI x86).
        quant_format: ``qdq`` (QuantizeLinear/DequantizeLinear pairs, fused by ONNX Runtime) or ``qoperator``.
        calibrate_method: ``minmax``, ``percentile`` or ``entropy``.
        keep_fp32: node-name prefixes left unquantised.
        op_types: operator types to quantise (None: every type ONNX Runtime can).
        fp32_outputs: operator types whose outputs stay fp32 (their inputs and weights are still int8).
            OpenVINO runs such convolutions in int8; ONNX Runtime fuses only fully quantised ones.
    """

    per_channel: bool = True
    reduce_range: bool = False
    quant_format: str = QUANT_FORMATS[0]
    calibrate_method: str = CALIBRATION_METHODS[0]
    keep_fp32: tuple[str, ...] = ()
    op_types: tuple[str, ...] | None = None
    fp32_outputs: tuple[str, ...] = ()


def quantize_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration: np.ndarray,
    options: QuantOptions | None = None,
) -> dict[str, Any]:
    """Static int8 quantisation of an fp32 ONNX file, calibrated on real images.

    ``quant_pre_process`` (shape inference and graph clean-up) runs first, as ONNX Runtime recommends;
    activations are uint8 and weights int8, the pairing ONNX Runtime's x86 kernels run fastest.

    Args:
        fp32_path: the fp32 model (input ``image``).
        int8_path: where the int8 model goes (not checked: :func:`export_onnx` checks before installing).
        calibration: (N, 3, h, w) float32 preprocessed images; the activation ranges are measured on them.
        options: per-channel scales, format, calibration method, layers kept in fp32 ... (default: ``QuantOptions()``).

    Returns:
        The settings used, for ``export.json``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options = options or QuantOptions()
    keep_fp32, op_types, fp32_outputs = options.keep_fp32, options.op_types, options.fp32_outputs

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    work_dir = Path(tempfile.mkdtemp(prefix=".quantize-", dir=Path(int8_path).parent))
    prepared = work_dir / "prepared.onnx"
    try:
        # the quantiser prints calibration notes and logs (root logger) a warning per shape tensor it leaves alone
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
            warnings.simplefilter("ignore")
            _pre_process(fp32_path, prepared)
            excluded = (
                [name for name in _node_names(prepared) if name.startswith(tuple(keep_fp32))] if keep_fp32 else []
            )
            quantize_static(
                str(prepared),
                str(int8_path),
                _calibration_reader(calibration),
                quant_format=QuantFormat.QDQ if options.quant_format == "qdq" else QuantFormat.QOperator,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: the x86 (AVX2/VNNI) int8 kernels
                weight_type=QuantType.QInt8,
                calibrate_method=methods[options.calibrate_method],
                nodes_to_exclude=excluded,
                op_types_to_quantize=list(op_types) if op_types else None,
                extra_options={"OpTypesToExcludeOutputQuantization": list(fp32_outputs)} if fp32_outputs else None,
            )
    except CitysegError:
        raise
    except Exception as exc:
        raise CitysegError(f"int8 quantisation failed: {first_line(exc)}") from None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "format": options.quant_format.upper() if options.quant_format == "qdq" else "QOperator",
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
        "activations": "uint8",
        "weights": "int8",
        "calibration_method": options.calibrate_method,
        "kept_fp32_prefixes": list(keep_fp32),
        "kept_fp32": excluded,
        "op_types": list(op_types) if op_types else "all",
        "fp32_outputs": list(fp32_outputs),
    }


def _pre_process(fp32_path: str | os.PathLike, prepared: Path) -> None:
    """Shape inference and graph clean-up, as ONNX Runtime recommends before quantising."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(fp32_path), str(prepared))
    except Exception:  # symbolic shape inference gives up on some graphs (FPN): ONNX shape inference still runs
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)


def _calibration_reader(images: np.ndarray):
    """ONNX Runtime's calibration input: one image per run, so memory stays that of a single forward pass."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self.images, None)
            return None if image is None else {"image": image[None]}

    return Reader()


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _node_names(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path), load_external_data=False).graph.node]
