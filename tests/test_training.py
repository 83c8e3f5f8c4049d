"""Training end to end on a few generated scenes with a tiny network: loss, run folder, resume, budget, reload."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.evaluation import EvaluateOptions, evaluate_run
from cityseg.run_folders import resolve_run
from cityseg.training import SegModule, class_weights, train

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning",
    "ignore::RuntimeWarning",
    "ignore:.*LeafSpec.*",  # Lightning's own deprecations
)


@pytest.fixture(scope="module")
def finished_run(scenes, tmp_path_factory, tiny_config_for):
    runs = tmp_path_factory.mktemp("runs")
    return train(tiny_config_for(scenes, runs))


# ---- a finished run ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_epochs_and_the_loss_falls(finished_run, history_reader):
    history = history_reader(finished_run)
    assert [row["epoch"] for row in history] == ["0", "1"]
    assert float(history[1]["train_loss"]) < float(history[0]["train_loss"])
    for column in ("val_loss", "train_acc", "val_acc", "train_mIoU", "val_mIoU", "lr"):
        assert all(row[column] for row in history), column


@pytest.mark.slow
def test_run_folder_holds_everything(finished_run):
    for name in ("config.yaml", "splits.json", "labeller.json", "history.csv", "metrics.json", "report.html"):
        assert (finished_run / name).is_file(), name
    assert (finished_run / "checkpoints" / "best.ckpt").is_file()
    assert (finished_run / "checkpoints" / "last.ckpt").is_file()
    for name in ("config.json", "model.safetensors", "README.md", "cityseg.json"):
        assert (finished_run / "model" / name).is_file(), name
    for name in ("loss.png", "accuracy.png", "miou.png", "predictions.png", "confusion.png", "class_iou.png"):
        assert (finished_run / "plots" / name).is_file(), name
    assert resolve_run(finished_run.parent / "latest") == finished_run.resolve()
    assert Config.from_yaml(finished_run / "config.yaml").model.decoder_width == 32
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["images"] == 4
    confmat = np.array(metrics["confmat"])  # the test pixels, counted once: recompute the scores from them
    hits, union = np.diag(confmat), confmat.sum(0) + confmat.sum(1) - np.diag(confmat)
    assert confmat.sum() == metrics["pixels"] > 0
    assert metrics["mIoU"] == pytest.approx(np.mean(hits[union > 0] / union[union > 0]))
    assert metrics["aAcc"] == pytest.approx(hits.sum() / confmat.sum())
    assert metrics["encoder_weights"] == "none"
    checkpoint = torch.load(finished_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["config"]["model"]["encoder"] == "resnet18"  # the config travels along


@pytest.mark.slow
def test_saved_model_reloads_offline_with_identical_outputs(finished_run, monkeypatch):
    from cityseg.models import load_model

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    net, info = load_model(finished_run / "model")
    best = SegModule.load_from_checkpoint(
        finished_run / "checkpoints" / "best.ckpt", map_location="cpu", pretrained=False
    )
    best.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(images), best(images))
    assert info.input_size == (64, 64) and info.num_classes == 19


@pytest.mark.slow
def test_evaluate_scores_the_test_split_and_the_untrained_baseline(finished_run, tmp_path):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    result = evaluate_run(finished_run, options=EvaluateOptions(baseline=True, progress=False), out=tmp_path)
    assert result["images"] == 4
    assert result["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-6)  # same model, same test images
    assert result["baseline"]["aAcc"] != result["aAcc"]
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["mIoU"] == result["mIoU"] and "baseline" in written
    assert (tmp_path / "plots" / "confusion.png").is_file()
    # a bare model folder works too, on data given explicitly
    quiet = EvaluateOptions(progress=False)
    from_model = evaluate_run(finished_run / "model", metrics_root(finished_run), quiet, out=tmp_path)
    assert from_model["mIoU"] == pytest.approx(result["mIoU"], abs=1e-6)


def metrics_root(run: Path) -> str:
    return json.loads((run / "splits.json").read_text())["root"]


# ---- resume and budget ------------------------------------------------------------------------------


class Crash(Exception):
    pass


class CrashAtEpoch:
    """A callback that kills the run when epoch ``epoch`` starts, as a power cut would."""

    def __new__(cls, epoch: int):
        from lightning.pytorch.callbacks import Callback

        class _Crash(Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == epoch:
                    raise Crash(f"simulated crash at epoch {epoch}")

        return _Crash()


@pytest.mark.slow
def test_interrupted_run_resumes_at_the_next_epoch(scenes, tmp_path, history_reader, tiny_config_for):
    config = tiny_config_for(scenes, tmp_path, train__max_epochs=3)
    with pytest.raises(Crash):
        train(config, callbacks=[CrashAtEpoch(1)])
    run = next(p for p in tmp_path.iterdir() if (p / "checkpoints" / "last.ckpt").is_file())
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0  # only the first epoch finished
    steps_per_epoch = saved["global_step"]

    moved = run.rename(tmp_path / "moved-run")  # a run folder copied elsewhere, or renamed, resumes the same
    run = moved
    resumed = Config.from_yaml(run / "config.yaml").override(["train.max_epochs=2"])
    assert train(resumed, resume=run) == run
    # its checkpoints are rewritten in place, not written beside as best-v1.ckpt / last-v1.ckpt
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 1
    history = history_reader(run)
    assert [row["epoch"] for row in history] == ["0", "1"]
    assert int(history[1]["step"]) == 2 * steps_per_epoch - 1  # the step counter went on, not from zero
    assert len(list((run / "csv").glob("version_*"))) == 2  # one logger session per start
    assert Config.from_yaml(run / "config.yaml").train.max_epochs == 2
    assert (run / "model" / "model.safetensors").is_file()


def test_resume_needs_a_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CitysegError, match=r"last\.ckpt"):
        train(None, resume=tmp_path / "run")


@pytest.mark.slow
def test_budget_ends_training_and_keeps_the_best_checkpoint(scenes, tmp_path, tiny_config_for):
    budget_minutes = 0.1  # 6 seconds
    config = tiny_config_for(scenes, tmp_path, train__max_epochs=500, train__budget_minutes=budget_minutes)
    config.override(["optim.schedule=cosine", "train.budget_probe_steps=2", "train.patience=500"])
    started = time.monotonic()
    run = train(config)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] < 500
    assert metrics["best_checkpoint"] == "best.ckpt"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # Lightning's Timer measured the training loop (validation included); a slow step or validation on a
    # busy machine may end some seconds past the budget
    elapsed = checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert elapsed < budget_minutes * 60 + 20, elapsed
    # the cosine schedule was fitted to the steps that fit in the budget, not to 500 epochs of them
    # (9 training images in batches of 3: 1500 steps in 500 epochs). The plan comes from the pace measured
    # early on; later steps on a busy machine may run slower than that, hence the factor of 2
    planned = checkpoint["callbacks"]["BudgetPlanner"]["planned_steps"]
    assert planned is not None and planned <= 2 * metrics["steps"] + 10 and planned < 1500, planned
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_two_process_ddp_run_writes_one_run_with_exact_test_metrics(scenes, tmp_path, history_reader):
    """Scale out: 2 CPU processes (gloo), one run folder written by rank 0, test images each scored once."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "cityseg.cli", "train", str(scenes), "--runs-dir", str(tmp_path)]
    command += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--epochs", "1", "--workers", "0"]
    command += ["--encoder", "resnet18", "--size", "64", "--batch-size", "2"]
    for setting in ("model.encoder_depth=3", "model.decoder_width=32", "train.progress=false", "augment.enabled=false"):
        command += ["--set", setting]
    command += ["--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.val_fraction=0.25"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run folder:") == 1  # one summary, from rank 0
    runs = [p for p in tmp_path.iterdir() if (p / "config.yaml").is_file() and not p.is_symlink()]
    assert len(runs) == 1  # both processes wrote into the same run folder
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["images"] == 4
    single = evaluate_run(runs[0], options=EvaluateOptions(progress=False), out=tmp_path / "eval")
    assert single["pixels"] == metrics["pixels"]  # no test image repeated to even out the shards
    assert single["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-9)
    # 3 validation images on 2 processes: the short shard was padded with an ignored item, not a repeat
    validated = evaluate_run(runs[0], options=EvaluateOptions(split="val", progress=False), out=tmp_path / "eval-val")
    assert validated["images"] == 3
    assert float(history_reader(runs[0])[-1]["val_mIoU"]) == pytest.approx(validated["mIoU"], abs=1e-6)

    # the 2-process checkpoint resumes in a single process, at the next epoch
    config = Config.from_yaml(runs[0] / "config.yaml")
    config.override(["train.devices=1", "train.strategy=auto", "train.max_epochs=2"])
    train(config, resume=runs[0])
    assert [row["epoch"] for row in history_reader(runs[0])] == ["0", "1"]


@pytest.mark.slow
def test_a_bad_file_met_by_one_ddp_rank_is_one_line_from_the_command(scenes, tmp_path, tiny_config_for):
    """Rank 1 (the process Lightning starts beside the user's) meets a damaged photo: one line, exit 2, no traceback."""
    import os
    import shutil
    import subprocess
    import sys

    from cityseg.datasets import prepare_labels
    from cityseg.splits import split_dataset

    root = shutil.copytree(scenes, tmp_path / "scenes")
    config = tiny_config_for(root, tmp_path)
    splits = split_dataset(config)[0]
    prepare_labels(config, splits, progress=False)  # labels cached, so only reading the photo meets the damage
    # validation shards go image by image (ShardSampler): the second validation photo is rank 1's, read in
    # Lightning's sanity check; damaged after labelling with its size and time kept, so its cache entry holds
    bad = Path(splits["val"][1])
    stat = bad.stat()
    bad.write_bytes(b"\0" * 16 + bad.read_bytes()[16:])
    os.utime(bad, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    command = [sys.executable, "-m", "cityseg.cli", "train", str(root), "--runs-dir", str(tmp_path / "runs")]
    command += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--epochs", "1", "--workers", "0"]
    command += ["--encoder", "resnet18", "--size", "64", "--batch-size", "2"]
    for setting in ("model.encoder_depth=3", "model.decoder_width=32", "train.progress=false"):
        command += ["--set", setting]
    command += ["--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.val_fraction=0.25"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # the pipes close when both processes have exited: what rank 1 prints after rank 0 has gone is caught too
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr
    assert line.count("\n") == 1 and line.startswith(f"cityseg: error: {bad} ") and line.endswith(" (in rank 1)\n")


def _outside_launch(launcher: str, scenes: Path, runs: Path) -> list[str]:
    """Start a 2-process CPU run the way torchrun or SLURM's srun would; returns each process's stdout."""
    import os
    import subprocess
    import sys

    arguments = ["train", str(scenes), "--runs-dir", str(runs), "--accelerator", "cpu", "--devices", "2"]
    arguments += ["--strategy", "ddp", "--epochs", "1", "--workers", "0", "--encoder", "resnet18", "--size", "64"]
    arguments += ["--set", "model.encoder_depth=3", "--set", "train.progress=false"]
    arguments += ["--set", f"data.cache_dir={runs / 'cache'}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
        done = subprocess.run([*command, "-m", "cityseg.cli", *arguments], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return [done.stdout]
    # srun starts every task itself and describes the job in SLURM_* variables, which Lightning reads
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NODEID": "0", "SLURM_JOB_ID": "4242"}
    slurm |= {"SLURM_NODELIST": "localhost", "SLURM_JOB_NAME": "cityseg-test"}
    tasks = [
        subprocess.Popen(
            [sys.executable, "-m", "cityseg.cli", *arguments],
            env={**env, **slurm, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [task.communicate(timeout=300) for task in tasks]
    for task, (_, stderr) in zip(tasks, outputs, strict=True):
        assert task.returncode == 0, stderr[-2000:]
    return [stdout for stdout, _ in outputs]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_outside_launchers_run_the_same_command(launcher, scenes, tmp_path):
    outputs = _outside_launch(launcher, scenes, tmp_path)
    assert "".join(outputs).count("run folder:") == 1  # one summary, from rank 0
    runs = [p for p in tmp_path.iterdir() if (p / "metrics.json").is_file() and not p.is_symlink()]
    assert len(runs) == 1 and not list(tmp_path.glob(".pending-*"))  # one run folder, named by rank 0
    assert json.loads((runs[0] / "metrics.json").read_text())["images"] == 4


# ---- pieces -----------------------------------------------------------------------------------------


def test_seed_preset_builds_the_documented_model():
    import segmentation_models_pytorch as smp

    config = Config.from_yaml("seed")
    module = SegModule(config, [f"cluster {i}" for i in range(config.labels.k)])
    assert isinstance(module.net, smp.Unet)
    assert type(module.net.encoder).__name__ == "ResNetEncoder"
    assert len(module.net.encoder.layer1) == 3 and len(module.net.encoder.layer3) == 6  # ResNet34: 3-4-6-3 blocks
    assert module.net.segmentation_head[0].out_channels == 10
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["lr"] == 0.01
    assert module.criterion.ce.ignore_index == 255 and module.criterion.ce.weight is None  # plain sparse CE
    assert module.criterion.terms == ["ce"]


def test_class_weights_favour_rare_classes():
    import numpy as np

    counts = np.array([180, 20, 0])  # class 0: 90 pixels in each of two images, class 1: 10, class 2: none
    weights = class_weights(counts)
    assert weights[1] > 5 * weights[0]
    assert weights[2] == 1.0
    assert (weights[0] + weights[1]) / 2 == pytest.approx(1.0)
