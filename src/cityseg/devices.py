"""Where a process computes: its share of the CPU threads, and the device an accelerator setting names."""

from __future__ import annotations

import os

import torch

from cityseg.config import Config
from cityseg.errors import CitysegError


def configure_threads(config: Config) -> int:
    """Give each process its share of the CPU cores (2 cores and 2 threads each in 2 processes would thrash)."""
    threads = config.train.threads
    if threads <= 0:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        # processes on this machine: set by the launcher in each of them; before the launch, CPU training
        # with devices=N will start N of them
        devices = str(config.train.devices)
        planned = devices if devices.isdigit() and config.train.accelerator == "cpu" else "1"
        local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", planned)))
        threads = max(1, cores // local_processes)
    torch.set_num_threads(threads)
    return threads


def pick_device(accelerator: str) -> torch.device:
    """The torch device of ``train.accelerator`` (auto: CUDA, then Apple MPS, then the CPU)."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("auto", "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    if accelerator not in ("auto", "cpu"):
        raise CitysegError(f"accelerator {accelerator!r} is not available here; use cpu or auto")
    return torch.device("cpu")
