"""How a model transfers: one model on several datasets, side by side (evaluate --data A --data B, the benchmark)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.cli import main
from cityseg.evaluation import EvaluateOptions
from cityseg.label_formats import read_label_file
from cityseg.metrics import metrics_report
from cityseg.transfer import TransferTable, evaluate_transfer, transfer_column


@pytest.fixture(scope="module")
def trained(layouts, tmp_path_factory):
    """A tiny model trained one epoch on the images/ + labels/ miniature (train ids of 19 classes)."""
    from cityseg.config import Config
    from cityseg.training import train

    tmp = tmp_path_factory.mktemp("transfer")
    config = Config()
    config.data.root = str(layouts["images"])
    config.data.cache_dir = str(tmp / "cache")
    config.train.runs_dir = str(tmp / "runs")
    settings = ["data.size=64,64", "data.batch_size=2", "data.workers=0", "data.val_fraction=0.25"]
    settings += ["model.encoder=resnet18", "model.encoder_depth=3", "model.decoder_width=16", "optim.schedule=none"]
    config.override([*settings, "train.max_epochs=1", "train.progress=false", "train.threads=1"])
    return train(config)


def _check_column(column, metrics_file: Path) -> None:
    """The column says what the confusion matrix of its evaluation says, absent classes as None."""
    report = json.loads(metrics_file.read_text())
    confmat = np.asarray(report["confmat"], dtype=np.float64)
    truth, hits = confmat.sum(axis=1), np.diag(confmat)
    union = truth + confmat.sum(axis=0) - hits
    assert column.aAcc == pytest.approx(hits.sum() / confmat.sum())
    assert column.mIoU == pytest.approx(np.mean(hits[truth > 0] / union[truth > 0]))  # annotated classes only
    assert [name for name, iou in column.iou.items() if iou is None] == [
        name for name, pixels in zip(report["per_class"], truth, strict=True) if pixels == 0
    ]
    assert column.images == report["images"]


@pytest.mark.slow
def test_one_model_on_three_datasets_in_one_table(trained, layouts):
    datasets = [layouts["images"], layouts["kitti"], layouts["bdd100k"]]
    table = evaluate_transfer(trained, datasets, EvaluateOptions(progress=False))
    assert [c.name for c in table.columns] == ["images", "kitti", "bdd100k"]
    assert [c.own for c in table.columns] == [True, False, False]  # its own data: its own test split
    assert [c.images for c in table.columns] == [2, 1, 2]  # val folders; KITTI has none: a seeded share
    for column in table.columns:
        _check_column(column, Path(column.written))
    folder = trained / "evaluations" / "transfer-test-images,kitti,bdd100k"
    assert TransferTable.from_dict(json.loads((folder / "transfer.json").read_text())).to_dict() == table.to_dict()
    assert Image.open(folder / "plots" / "transfer.png").size[0] > 300
    page = (trained / "report.html").read_text()
    assert "transfer: transfer-test-images,kitti,bdd100k" in page and "absent from that dataset" in page
    text = str(table)
    assert text.splitlines()[0].split() == ["images", "kitti", "bdd100k"] and "test (own)" in text
    train_row = next(line for line in text.splitlines() if line.startswith("train "))
    assert train_row.split()[1:] == ["-", "-", "-"]  # no scene has a train: absent everywhere, not 0


@pytest.mark.slow
def test_the_command_line_prints_the_table_and_other_data_scores_only_what_it_annotates(
    trained, layouts, tmp_path, capsys
):
    out = tmp_path / "table"
    argv = ["evaluate", str(trained), "--data", str(layouts["acdc"]), "--data", str(layouts["darkzurich"])]
    assert main([*argv, "--split", "all", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["acdc", "darkzurich"] and "IoU % per class" in printed
    assert (out / "acdc" / "metrics.json").is_file() and (out / "transfer.json").is_file()
    single = json.loads((out / "acdc" / "metrics.json").read_text())
    assert single["annotated_only"] is True and single["images"] == 6  # --split all: every labelled photo
    assert all(entry["iou"] is None for entry in single["per_class"].values() if not entry["present"])
    assert main(["evaluate", str(trained), "--data", str(layouts["kitti"])]) == 0
    printed = capsys.readouterr().out
    assert "(absent)" in printed and "(not in truth)" not in printed


def test_absent_classes_are_left_out_of_the_mean_on_other_data():
    confmat = np.array([[5, 1, 0], [0, 0, 0], [0, 2, 2]])  # class 1 predicted, never in the truth
    usual, other = (
        metrics_report(confmat, ["a", "b", "c"]),
        metrics_report(confmat, ["a", "b", "c"], annotated_only=True),
    )
    assert usual["per_class"]["b"]["iou"] == 0.0 and usual["mIoU"] == pytest.approx((5 / 6 + 0 + 0.5) / 3)
    assert other["per_class"]["b"]["iou"] is None and other["mIoU"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert other["annotated_only"] and transfer_column("x", {**usual, "images": 1}).mIoU == other["mIoU"]


def test_labels_of_different_sizes_are_scored_each_at_its_own(tmp_path):
    from cityseg.datasets import collate_pairs
    from cityseg.evaluation import evaluate_model

    items = [(torch.zeros(3, 8, 8), torch.zeros(6, 10, dtype=torch.long)), (torch.zeros(3, 8, 8), torch.ones(5, 9))]
    images, masks = collate_pairs(items)
    assert images.shape == (2, 3, 8, 8) and [m.shape for m in masks] == [(6, 10), (5, 9)]
    same = collate_pairs([items[0], items[0]])
    assert same[1].shape == (2, 6, 10)

    class AlwaysClassOne(torch.nn.Module):
        def forward(self, x):
            return torch.stack([torch.zeros_like(x[:, 0]), torch.ones_like(x[:, 0])], dim=1)

    _, confmat = evaluate_model(AlwaysClassOne(), [(images, [m.long() for m in masks])], num_classes=2)
    assert confmat.tolist() == [[0, 60], [0, 45]]  # every pixel of both labels, at their own sizes


@pytest.mark.slow
def test_a_dataset_of_photos_of_several_sizes_is_evaluated_in_batches(trained, layouts, tmp_path):
    from cityseg.evaluation import evaluate_run

    kitti = shutil.copytree(layouts["kitti"], tmp_path / "kitti")
    for folder in ("image_2", "semantic"):  # KITTI's photos are not all one size: make one 8 pixels narrower
        path = kitti / "training" / folder / "000000_10.png"
        Image.open(path).crop((0, 0, 152, 48)).save(path)
    options = EvaluateOptions(split="all", batch_size=3, progress=False)
    report = evaluate_run(trained, data=kitti, options=options, out=tmp_path / "e")
    labels = [read_label_file(p, "labelids", class_set("train19")) for p in (kitti / "training/semantic").iterdir()]
    assert report["images"] == 6 and report["pixels"] == sum(int((lab != IGNORE_INDEX).sum()) for lab in labels)


def test_validation_scores_labels_of_several_sizes_in_one_batch():
    from cityseg.config import Config
    from cityseg.training.module import SegModule

    config = Config().override(["model.encoder=resnet18", "model.encoder_depth=3", "model.decoder_width=16"])
    module = SegModule(config, ["a", "b"], pretrained=False)
    masks = [torch.zeros(32, 40, dtype=torch.long), torch.ones(24, 40, dtype=torch.long)]
    loss = module._shared_step((torch.zeros(2, 3, 32, 32), masks), "val")
    assert loss.ndim == 0 and int(module.val_metrics.compute()["confmat"].sum()) == 32 * 40 + 24 * 40


@pytest.mark.slow
def test_the_benchmark_scores_every_model_on_the_same_held_out_images(
    trained, layouts, tmp_path, capsys, benchmark_loader
):
    benchmark = benchmark_loader("transfer")
    saved = tmp_path / "result.json"
    argv = ["--model", f"tiny={trained}", "--data", f"own={layouts['images']}", "--data", f"kitti={layouts['kitti']}"]
    assert benchmark.main([*argv, "--out", str(saved)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0] == "| model | evaluated on | images | aAcc % | mIoU % |"
    assert lines[2].startswith("| tiny | own (trained on it) | 2 |") and lines[3].startswith("| tiny | kitti | 1 |")
    assert "| IoU % | tiny on own | tiny on kitti |" in printed and "| train | - | - |" in printed
    held_out = benchmark.held_out_images(layouts["images"], [trained])
    assert [p.name for p in held_out] == ["00000.png", "00001.png"]  # the run's test split: the val folder
    assert benchmark.main(["--table", str(saved)]) == 0
    assert capsys.readouterr().out == printed
