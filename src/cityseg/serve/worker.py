"""One model, one thread: the queue of preprocessed images, batched forward passes, and admission."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from cityseg.defaults import MAX_BATCH


@dataclass
class Inference:
    """The worker's answer for one image."""

    logits: np.ndarray  # (C, h, w)
    queue_s: float  # from submit() to the start of its forward pass
    model_s: float  # the forward pass of its batch
    batch_size: int  # images in that batch


class InferenceWorker:
    """One thread that owns the model and runs it on a FIFO queue of preprocessed images.

    Each forward pass takes the oldest waiting image and up to ``max_batch - 1`` more that are already
    waiting (it never waits to fill a batch). The queue itself is unbounded: the server's admission limit
    bounds how many images can be in it.

    Args:
        run: (B, 3, h, w) float32 -> (B, C, h, w) logits, e.g. ``Segmenter.logits``.
        max_batch: images per forward pass.

    Example:
        >>> worker = InferenceWorker(segmenter.logits)  # doctest: +SKIP
        >>> worker.submit(preprocess(photo, info)).result().logits.shape  # doctest: +SKIP
        (19, 256, 256)
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = MAX_BATCH):
        self.run = run
        self.max_batch = max_batch
        self.images = 0  # segmented so far
        self.batches = 0
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # (image, future, submitted) or None to stop
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, image: np.ndarray) -> Future:
        """Queue one (3, h, w) float32 image; the future gives its :class:`Inference`."""
        future: Future = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="cityseg-inference", daemon=True)
                self._thread.start()
            self._jobs.put((image, future, time.perf_counter()))
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Finish the images already queued, then stop the thread (a later submit starts a new one)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._jobs.put(None)
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch, stop = [job], False
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list) -> None:
        jobs = [job for job in batch if job[1].set_running_or_notify_cancel()]  # drop requests given up on
        if not jobs:
            return
        started = time.perf_counter()
        try:
            logits = self.run(np.stack([image for image, _, _ in jobs]))  # (B, 3, h, w) -> (B, C, h, w)
        except BaseException as exc:  # the thread must survive a failing batch; the requests get a 500
            for _, future, _ in jobs:
                future.set_exception(exc)
            return
        model_s = time.perf_counter() - started
        self.images += len(jobs)
        self.batches += 1
        for scores, (_, future, submitted) in zip(logits, jobs, strict=True):
            future.set_result(Inference(scores, started - submitted, model_s, len(jobs)))


class Admission:
    """A counter of requests in flight that refuses, rather than queues, the one past ``capacity``."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_flight = 0
        self._lock = threading.Lock()  # TestClient runs each client's event loop in its own thread

    def try_enter(self) -> bool:
        with self._lock:
            if self.in_flight >= self.capacity:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
