"""Checkpoints survive kills and full disks; a damaged one is named, with the way on, before a run resumes."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cityseg.errors import CitysegError
from cityseg.training.checkpoints import AtomicCheckpointIO, check_checkpoint, checkpoint_path


def lightning_like(step: int, size: int = 200_000) -> dict:
    """A checkpoint shaped like Lightning's: a state_dict, the loop's counters and Lightning's version."""
    return {
        "state_dict": {"net.weight": torch.full((size,), float(step))},
        "global_step": step,
        "epoch": 0,
        "pytorch-lightning_version": "2.5.0",
    }


def make_run(tmp_path: Path, steps: dict[str, int]) -> Path:
    run = tmp_path / "run"
    for which, step in steps.items():
        AtomicCheckpointIO().save_checkpoint(lightning_like(step), checkpoint_path(run, which))
    return run


def test_a_saved_checkpoint_reads_back_and_leaves_no_temporary_file(tmp_path):
    run = make_run(tmp_path, {"last": 3})
    assert check_checkpoint(run) == checkpoint_path(run, "last")
    state = torch.load(checkpoint_path(run, "last"), weights_only=True)
    assert state["global_step"] == 3 and float(state["state_dict"]["net.weight"][0]) == 3.0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_what_was_needed(tmp_path, monkeypatch):
    run = make_run(tmp_path, {"last": 1})
    before = checkpoint_path(run, "last").read_bytes()

    def full_disk(self, data):
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 3])  # part of it fits, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(CitysegError, match=r"disk full writing .*last\.ckpt \(needs \d+ KB, .* free\)") as error:
        AtomicCheckpointIO().save_checkpoint(lightning_like(2), checkpoint_path(run, "last"))
    assert "\n" not in str(error.value)
    monkeypatch.undo()
    assert checkpoint_path(run, "last").read_bytes() == before  # the previous complete checkpoint
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]  # no half-written temp file


def test_a_checkpoint_without_what_lightning_resumes_from_is_refused_before_lightning_reads_it(tmp_path):
    """Weights alone (another program's, or a checkpoint reduced to them) made Lightning fail with a KeyError."""
    run = make_run(tmp_path, {"last": 5})
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, checkpoint_path(run, "last"))
    with pytest.raises(CitysegError, match="not a Lightning checkpoint of a cityseg run; start a new run instead"):
        check_checkpoint(run)


def test_a_truncated_checkpoint_is_named_with_the_way_on(tmp_path):
    run = make_run(tmp_path, {"last": 5, "best": 4})
    last = checkpoint_path(run, "last")
    last.write_bytes(last.read_bytes()[:1000])  # what a kill during a non-atomic save leaves
    with pytest.raises(CitysegError, match=r"checkpoint .*last\.ckpt is damaged .*--from best") as error:
        check_checkpoint(run)
    assert "\n" not in str(error.value)
    assert check_checkpoint(run, "best") == checkpoint_path(run, "best")
    checkpoint_path(run, "best").unlink()
    with pytest.raises(CitysegError, match=r"damaged .*start a new run instead"):
        check_checkpoint(run)
    with pytest.raises(CitysegError, match=r"no checkpoints/best\.ckpt to resume from"):
        check_checkpoint(run, "best")
    with pytest.raises(CitysegError, match="unknown checkpoint 'first'"):
        check_checkpoint(run, "first")


WRITER = """
import sys, torch
from pathlib import Path
from cityseg.training.checkpoints import AtomicCheckpointIO
path = Path(sys.argv[1])
step = int(sys.argv[2])
print("ready", flush=True)
while True:
    step += 1
    state = {"state_dict": {"w": torch.full((1_000_000,), float(step))}, "global_step": step, "epoch": 0,
             "pytorch-lightning_version": "2.5.0"}
    AtomicCheckpointIO().save_checkpoint(state, path)
"""


@pytest.mark.slow
def test_killing_the_writer_at_random_moments_always_leaves_a_complete_checkpoint(tmp_path):
    run = make_run(tmp_path, {"last": 0})
    path = checkpoint_path(run, "last")
    rng = random.Random(0)
    kills, steps = 0, []
    for _ in range(12):  # at least 10 kills, each at a random moment of a save (4 MB: about 10 ms a save)
        step = int(torch.load(path, weights_only=True)["global_step"])
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(step)], stdout=subprocess.PIPE)
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        kills += 1
        resumed = check_checkpoint(run)  # what --resume reads first: complete every time
        state = torch.load(resumed, weights_only=True)
        assert float(state["state_dict"]["w"][-1]) == state["global_step"] >= step
        steps.append(state["global_step"])
    assert kills >= 10 and steps == sorted(steps) and steps[-1] > steps[0]  # saves went on between the kills
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith(".")) == ["last.ckpt"]


def _kill_during_a_save(command: list[str], runs: Path, saves_first: int, delay_s: float) -> str:
    """Run ``command``; SIGKILL it ``delay_s`` into its ``saves_first``-th checkpoint save (seen as the save's
    temporary file in a run folder under ``runs``). Returns "" when killed, else what it printed on stderr."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: set[str] = set()
    try:
        while process.poll() is None:
            saving = {p.name for p in runs.glob("*/checkpoints/.*.tmp.ckpt")}
            seen |= saving
            if saving and len(seen) >= saves_first:
                time.sleep(delay_s)
                process.kill()
                process.wait()
                return ""
            time.sleep(0.0005)
        return process.stderr.read() or f"exit {process.returncode} before its save {saves_first}"
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_a_training_run_killed_during_checkpoint_saves_resumes_every_time(scenes, tmp_path, history_reader):
    """kill -9 of `cityseg train` in the middle of a checkpoint save, 10 times, each kill followed by --resume."""
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "cityseg.cli", "train", str(scenes), "--runs-dir", str(runs), "--epochs", "40"]
    command += ["--workers", "0", "--encoder", "resnet18", "--size", "64", "--batch-size", "3"]
    for setting in ("model.encoder_depth=3", "model.decoder_width=32", "train.progress=false", "train.patience=100"):
        command += ["--set", setting]
    command += ["--set", f"data.cache_dir={tmp_path / 'cache'}"]
    rng = random.Random(0)
    kills, steps, run = 0, [], None
    while kills < 10:
        argv = command if run is None else [*command[:4], "--resume", str(run)]
        # the 3rd or 4th save: one last.ckpt is complete by then, so each resume goes on past the one before
        ended = _kill_during_a_save(argv, runs, rng.randint(3, 4), rng.uniform(0.0, 0.003))
        assert not ended, ended[-2000:]
        kills += 1
        run = run or next(runs.iterdir())
        resumed = check_checkpoint(run)  # what --resume reads first: complete after every kill
        steps.append(int(torch.load(resumed, map_location="cpu", weights_only=True)["global_step"]))
    assert steps == sorted(steps) and steps[-1] > steps[0]  # the resumed runs went on between the kills
    finished = subprocess.run([*command[:4], "--resume", str(run)], capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert [row["epoch"] for row in history_reader(run)] == [str(epoch) for epoch in range(40)]  # each epoch once
    assert (run / "model" / "model.safetensors").is_file()
    assert not list((run / "checkpoints").glob(".*.tmp.ckpt"))  # the cut-short saves were cleared on resume
