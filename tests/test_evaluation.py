"""Segmentation metrics against confusion matrices worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cityseg.classes import IGNORE_INDEX
from cityseg.evaluation import evaluate_model
from cityseg.metrics import SegmentationMetrics, confusion_scores, format_table, metrics_report

torch.set_num_threads(1)

# Example A: 3 classes, one ignored pixel.
#   target  [[0, 0, 1],      preds  [[0, 1, 1],
#            [1, 2, 255]]            [1, 0, 2]]
# (truth, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,0); (255,2) is ignored.
#   confmat (rows = truth) = [[1, 1, 0],
#                             [0, 2, 0],
#                             [1, 0, 0]]
#   TP = [1, 2, 0], truth = [2, 2, 1], predicted = [2, 3, 0], union = truth + predicted - TP = [3, 3, 1]
#   IoU = [1/3, 2/3, 0]   acc = [1/2, 1, 0]   (class 2 is in the truth but never predicted: 0, counted)
#   aAcc = 3/5, mAcc = (1/2 + 1 + 0)/3 = 1/2, mIoU = (1/3 + 2/3 + 0)/3 = 1/3
TARGET_A = torch.tensor([[[0, 0, 1], [1, 2, IGNORE_INDEX]]])
PREDS_A = torch.tensor([[[0, 1, 1], [1, 0, 2]]])
CONFMAT_A = [[1, 1, 0], [0, 2, 0], [1, 0, 0]]

# Example B: 4 classes; class 2 predicted once but absent from the truth, class 3 absent from both.
#   target [0, 0, 1, 1], preds [0, 2, 1, 1]
#   confmat = [[1, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
#   TP = [1, 2, 0, 0], truth = [2, 2, 0, 0], predicted = [1, 2, 1, 0], union = [2, 2, 1, 0]
#   IoU = [1/2, 1, 0, NaN] (class 2: 0 and counted; class 3: absent)   acc = [1/2, 1, NaN, NaN]
#   mIoU = (1/2 + 1 + 0)/3 = 1/2, mAcc = (1/2 + 1)/2 = 3/4, aAcc = 3/4
TARGET_B = torch.tensor([[[0, 0, 1, 1]]])
PREDS_B = torch.tensor([[[0, 2, 1, 1]]])


def test_example_a_by_hand():
    metric = SegmentationMetrics(num_classes=3)
    metric.update(PREDS_A, TARGET_A)
    result = metric.compute()
    assert result["confmat"].tolist() == CONFMAT_A
    assert result["aAcc"].item() == pytest.approx(3 / 5)
    assert result["mAcc"].item() == pytest.approx(1 / 2)
    assert result["mIoU"].item() == pytest.approx(1 / 3)
    assert result["iou"].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert result["acc"].tolist() == pytest.approx([1 / 2, 1.0, 0.0])


def test_example_b_absent_and_false_positive_classes():
    metric = SegmentationMetrics(num_classes=4)
    metric.update(PREDS_B, TARGET_B)
    result = metric.compute()
    iou, acc = result["iou"].tolist(), result["acc"].tolist()
    assert iou[:3] == pytest.approx([0.5, 1.0, 0.0]) and math.isnan(iou[3])
    assert acc[:2] == pytest.approx([0.5, 1.0]) and math.isnan(acc[2]) and math.isnan(acc[3])
    assert result["mIoU"].item() == pytest.approx(0.5)
    assert result["mAcc"].item() == pytest.approx(0.75)
    assert result["aAcc"].item() == pytest.approx(0.75)

    report = metrics_report(result["confmat"].numpy(), ["road", "car", "bus", "train"])
    assert report["per_class"]["bus"] == {"iou": 0.0, "acc": None, "present": False, "pixels": 0, "predicted": 1}
    assert report["per_class"]["train"] == {"iou": None, "acc": None, "present": False, "pixels": 0, "predicted": 0}
    assert report["per_class"]["road"]["present"] is True
    assert report["mIoU"] == pytest.approx(0.5)
    json.dumps(report, allow_nan=False)  # JSON-ready: no NaN


def test_ignored_pixels_do_not_count_whatever_is_predicted():
    target = torch.full((1, 4, 4), IGNORE_INDEX)
    target[0, 0, :2] = 1  # two labelled pixels, both predicted right
    preds = torch.randint(0, 3, (1, 4, 4))
    preds[0, 0, :2] = 1
    metric = SegmentationMetrics(num_classes=3)
    metric.update(preds, target)
    result = metric.compute()
    assert int(result["confmat"].sum()) == 2
    assert result["aAcc"].item() == 1.0
    assert result["iou"][1].item() == 1.0
    # the 14 ignored pixels were predicted as anything: classes 0 and 2 must still count as absent
    assert math.isnan(result["iou"][0].item()) and math.isnan(result["iou"][2].item())


def test_nothing_seen_gives_undefined_scores():
    report = metrics_report(np.zeros((3, 3), dtype=np.int64), ["a", "b", "c"])
    assert report["aAcc"] is None and report["mIoU"] is None and report["mAcc"] is None
    assert report["pixels"] == 0


def test_accumulating_batches_equals_one_big_batch():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (6, 16, 16), generator=generator)
    target[target == 4] = IGNORE_INDEX  # some void pixels
    preds = torch.where(torch.rand(6, 16, 16, generator=generator) < 0.7, target.clamp(max=3), 0)  # mostly right
    split = SegmentationMetrics(num_classes=4)
    for start in range(0, 6, 2):
        split.update(preds[start : start + 2], target[start : start + 2])
    whole = SegmentationMetrics(num_classes=4)
    whole.update(preds, target)
    a, b = split.compute(), whole.compute()
    assert torch.equal(a["confmat"], b["confmat"])
    for key in ("aAcc", "mAcc", "mIoU", "iou", "acc"):
        assert torch.allclose(a[key], b[key], equal_nan=True)
    # and it is the set-level IoU, not the mean of per-image IoUs
    per_image = []
    for i in range(6):
        single = SegmentationMetrics(num_classes=4)
        single.update(preds[i : i + 1], target[i : i + 1])
        per_image.append(single.compute()["mIoU"].item())
    reference = confusion_scores(torch.tensor(_bincount_confmat(preds, target, 4)))["mIoU"].item()
    assert b["mIoU"].item() == pytest.approx(reference)
    assert b["mIoU"].item() != pytest.approx(float(np.mean(per_image)), abs=1e-9)


def _bincount_confmat(preds, target, num_classes):
    keep = target != IGNORE_INDEX
    index = target[keep] * num_classes + preds[keep]
    return np.bincount(index.numpy(), minlength=num_classes**2).reshape(num_classes, num_classes)


def test_logits_are_accepted_and_merge_state_sums():
    logits = torch.nn.functional.one_hot(PREDS_A, 3).permute(0, 3, 1, 2).float()  # (1, 3, 2, 3)
    first, second = SegmentationMetrics(num_classes=3), SegmentationMetrics(num_classes=3)
    first.update(logits, TARGET_A)
    second.update(PREDS_A, TARGET_A)
    first.merge_state(second)  # what the DDP sync does across processes: sum the matrices
    assert first.compute()["confmat"].tolist() == (2 * torch.tensor(CONFMAT_A)).tolist()


def test_format_table_lists_every_class_and_the_means():
    report = metrics_report(np.array(CONFMAT_A), ["road", "sidewalk", "building"])
    table = format_table(report)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["class", "IoU", "%"]
    assert any(line.startswith("sidewalk") and "66.67" in line and "100.00" in line for line in lines)
    assert any(line.startswith("building") and "0.00" in line for line in lines)
    assert "mIoU 33.33" in lines[-1] and "mAcc 50.00" in lines[-1] and "aAcc 60.00" in lines[-1]
    # columns line up: every IoU value is right-aligned under the "IoU %" heading
    end = lines[0].index("IoU %") + len("IoU %")
    assert all(line[end - 1].isdigit() and line[end] == " " for line in lines[1:4])


def test_duplicate_names_are_made_unique():
    report = metrics_report(np.eye(3, dtype=np.int64), ["road", "road", "car"])
    assert list(report["per_class"]) == ["road#0", "road#1", "car"]


class _FixedNet(torch.nn.Module):
    """Outputs one-hot logits of a fixed prediction, at half the input resolution if asked."""

    def __init__(self, preds: torch.Tensor, num_classes: int, half: bool = False):
        super().__init__()
        self.preds, self.num_classes, self.half = preds, num_classes, half

    def forward(self, images):
        logits = torch.nn.functional.one_hot(self.preds, self.num_classes).permute(0, 3, 1, 2).float()
        return logits[..., ::2, ::2] if self.half else logits


def test_evaluate_model_scores_a_loader():
    images = torch.zeros(1, 3, 2, 3)
    net = _FixedNet(PREDS_A, 3)
    net.train()
    loader = [(images, TARGET_A), {"image": images, "mask": TARGET_A}]  # tuple and dict batches
    report, confmat = evaluate_model(net, loader, num_classes=3, device="cpu", names=["a", "b", "c"])
    assert confmat.tolist() == (2 * np.array(CONFMAT_A)).tolist()
    assert report["mIoU"] == pytest.approx(1 / 3)
    assert net.training  # mode restored


def test_evaluate_model_resizes_logits_to_the_mask():
    preds = torch.zeros(1, 4, 4, dtype=torch.long)
    preds[..., 2:] = 1  # left half class 0, right half class 1
    net = _FixedNet(preds, 2, half=True)  # (1, 2, 2, 2) logits for (1, 4, 4) masks
    report, confmat = evaluate_model(net, [(torch.zeros(1, 3, 4, 4), preds)], num_classes=2)
    assert confmat.sum() == 16
    assert report["aAcc"] == 1.0


def _ddp_worker(rank: int, world: int, init_file: str, queue) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    metric = SegmentationMetrics(num_classes=3)
    metric.update(PREDS_A if rank == 0 else PREDS_B.clamp(max=2), TARGET_A if rank == 0 else TARGET_B)
    queue.put((rank, metric.compute()["confmat"].tolist()))
    dist.destroy_process_group()


def test_confusion_matrix_is_summed_across_ddp_processes(tmp_path):
    import torch.multiprocessing as mp

    context = mp.get_context("fork")  # fork: the children reuse the imported torch (CPU-only, gloo)
    queue = context.Queue()
    workers = [context.Process(target=_ddp_worker, args=(r, 2, str(tmp_path / "init"), queue)) for r in range(2)]
    for worker in workers:
        worker.start()
    results = dict(queue.get(timeout=60) for _ in range(2))
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    # rank 1 sees example B with class 2 predictions kept: confmat [[1, 0, 1], [0, 2, 0], [0, 0, 0]]
    expected = (np.array(CONFMAT_A) + np.array([[1, 0, 1], [0, 2, 0], [0, 0, 0]])).tolist()
    assert results[0] == expected and results[1] == expected
