"""The optional parts of cityseg, each a pip extra, and the one-line error that names the one missing.

The core install trains, evaluates and predicts with PyTorch and ONNX Runtime. Serving (FastAPI), ONNX export,
OpenVINO and TensorBoard logs are extras most users do not need; each command that needs one checks for it
first and, where it is missing, says which ``pip install 'cityseg[...]'`` brings it.
"""

from __future__ import annotations

from importlib.util import find_spec

from cityseg.errors import CitysegError

# extra -> the modules it brings (any one of a tuple of alternatives will do)
EXTRAS: dict[str, tuple[tuple[str, ...], ...]] = {
    "serve": (("fastapi",), ("uvicorn",), ("python_multipart", "multipart")),
    "onnx": (("onnx",), ("onnxscript",)),  # export; ONNX Runtime is in the core install
    "openvino": (("openvino",),),
    "tensorboard": (("tensorboard",),),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (empty when it is complete)."""
    return [names[0] for names in EXTRAS[extra] if not any(find_spec(name) for name in names)]


def available(extra: str) -> bool:
    """Whether every module of ``extra`` is installed."""
    return not missing_modules(extra)


def require_module(module: str, what: str) -> None:
    """Raise a one-line error naming the pip install of ``module``, a core dependency a broken install lacks."""
    if find_spec(module) is None:
        raise CitysegError(
            f"{what} needs {module} (cityseg's core install brings it; missing here): pip install {module}"
        )


def require(extra: str, what: str) -> None:
    """Raise the one-line error naming the pip command unless ``extra`` is installed.

    Example:
        >>> require("serve", "cityseg serve")  # silent when FastAPI, uvicorn and python-multipart are there
    """
    missing = missing_modules(extra)
    if missing:
        raise CitysegError(
            f"{what} needs the {extra} extra ({', '.join(missing)} not installed): pip install 'cityseg[{extra}]'"
        )
