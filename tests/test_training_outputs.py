"""What a finished run writes in its folder (cityseg.training.outputs): history.csv from the logger's sessions."""

from __future__ import annotations

import csv
import math

from cityseg.training import write_history


def test_history_merges_logger_sessions_by_epoch(tmp_path):
    for version, rows in enumerate(
        [
            "epoch,step,train_loss,val_loss,val_mIoU\n0,4,,1.5,0.2\n0,4,1.9,,\n1,9,,1.4,",  # epoch 1 unfinished
            "epoch,step,train_loss,val_loss,val_mIoU\n1,9,,1.3,0.3\n1,9,1.6,,\n2,14,,1.2,0.35\n2,14,1.4,,",
        ]
    ):
        folder = tmp_path / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(rows + "\n")
    rows = list(csv.DictReader(write_history(tmp_path).open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert [float(r["val_loss"]) for r in rows] == [1.5, 1.3, 1.2]  # the resumed session's epoch 1 wins
    assert math.isclose(float(rows[2]["val_mIoU"]), 0.35)
