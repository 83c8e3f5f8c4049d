"""Figures: each is a valid PNG, written atomically, showing the data it was given."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from cityseg import plots
from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.errors import CitysegError
from cityseg.metrics import metrics_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = class_set("categories")  # 7 classes: flat, construction, object, nature, sky, human, vehicle


def open_png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as image:
        assert image.width > 100 and image.height > 100
        return np.asarray(image.convert("RGB"))


def count_colour(pixels: np.ndarray, colour) -> int:
    return int(np.all(pixels == np.asarray(colour, dtype=np.uint8), axis=-1).sum())


def no_temporaries(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


LIGHTNING_CSV = """epoch,step,train_loss_step,train_loss_epoch,val_loss,val_acc,val_mIoU,train_acc_epoch
0,9,1.9,,,,,
0,19,1.5,,,,,
0,19,,,1.4,0.55,0.20,
0,19,,1.6,,,,0.5
1,29,1.2,,,,,
1,39,,,1.1,0.65,nan,
1,39,,1.15,,,,0.62
"""


def test_history_from_lightning_metrics_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text(LIGHTNING_CSV)
    series = plots.read_history(csv)
    assert series["train_loss"] == [(0.0, 1.6), (1.0, 1.15)]  # the *_epoch column, not the per-step one
    assert series["val_loss"] == [(0.0, 1.4), (1.0, 1.1)]
    assert series["val_mIoU"] == [(0.0, 0.2)]  # blanks and NaN skipped
    assert series["train_acc"] == [(0.0, 0.5), (1.0, 0.62)]
    assert "train_loss_step" not in series and "step" not in series

    written = plots.plot_history(csv, tmp_path / "plots")
    assert [p.name for p in written] == ["loss.png", "accuracy.png", "miou.png"]
    for path in written:
        open_png(path)
    assert no_temporaries(tmp_path / "plots")


def test_history_with_missing_columns_draws_what_there_is(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,train_loss,val_loss\n1,0.9,1.0\n2,0.7,\n3,0.5,0.8\n")
    written = plots.plot_history(csv, tmp_path)
    assert [p.name for p in written] == ["loss.png"]
    assert plots.read_history(csv)["val_loss"] == [(1.0, 1.0), (3.0, 0.8)]


def test_history_errors(tmp_path):
    with pytest.raises(CitysegError, match="cannot read training history"):
        plots.plot_history(tmp_path / "missing.csv", tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,step\n0,1\n")
    with pytest.raises(CitysegError, match="no metric values"):
        plots.plot_history(empty, tmp_path)


def _scene(size: int = 32):
    photo = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    truth = np.zeros((size, size), dtype=np.uint8)  # flat
    truth[: size // 2] = 4  # sky on top
    truth[0, 0] = IGNORE_INDEX
    pred = np.full((size, size), 6, dtype=np.uint8)  # all vehicle
    return photo, truth, pred


def test_predictions_grid_draws_truth_and_prediction_in_class_colours(tmp_path):
    photo, truth, pred = _scene()
    path = plots.plot_predictions([photo, photo], [truth, truth], [pred, pred], CLASSES, tmp_path / "preds.png")
    pixels = open_png(path)
    flat, sky, vehicle = CLASSES.colors[0], CLASSES.colors[4], CLASSES.colors[6]
    assert count_colour(pixels, sky) > 2000 and count_colour(pixels, flat) > 2000  # truth panels
    assert count_colour(pixels, vehicle) > 4000  # prediction panels (+ legend swatch)
    assert no_temporaries(tmp_path)


def test_predictions_accept_float_tensors_and_check_lengths(tmp_path):
    import torch

    photo, truth, pred = _scene()
    tensor_photo = torch.from_numpy(photo).permute(2, 0, 1).float() / 255  # (3, H, W) in [0, 1]
    open_png(plots.plot_predictions([tensor_photo], [torch.from_numpy(truth)], [pred], CLASSES, tmp_path / "p.png"))
    with pytest.raises(ValueError, match="as many"):
        plots.plot_predictions([photo], [truth, truth], [pred], CLASSES, tmp_path / "bad.png")


def test_label_figure_rows(tmp_path):
    photo, labels, _ = _scene()
    colour_mask = CLASSES.colorize(labels)
    rows = [(photo, colour_mask, labels)] * 3
    pixels = open_png(plots.plot_label_figure(rows, CLASSES, tmp_path / "labels.png"))
    # every row shows the sky twice: once in the colour mask, once in the label map
    assert count_colour(pixels, CLASSES.colors[4]) > 3 * 2 * 1000
    with (
        Image.open(tmp_path / "labels.png") as one,
        Image.open(plots.plot_label_figure(rows[:1], CLASSES, tmp_path / "one.png")) as single,
    ):
        assert one.height > 2 * single.height  # N rows make a taller figure


def test_confusion_matrix_figure(tmp_path):
    confmat = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])  # third class absent: blank row
    path = plots.plot_confusion(confmat, ["road", "car", "bus"], tmp_path / "confusion.png")
    pixels = open_png(path)
    # each cell is drawn in the Blues colour of its share of the true class (rows sum to 1); the absent class's
    # row stays blank. Found from the first cell (80%): its centre and its side.
    blues = matplotlib.colormaps["Blues"]
    first = np.all(pixels == blues(0.8, bytes=True)[:3], axis=-1)
    ys, xs = np.nonzero(first)
    centre_y, centre_x, side = int(np.median(ys)), int(np.median(xs)), round(float(np.sqrt(first.sum())))
    shares = [[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [None, None, None]]
    for t, row in enumerate(shares):
        for p, share in enumerate(row):
            y, x = centre_y + t * side - side // 3, centre_x + p * side - side // 3  # off the centre's text
            colour = (255, 255, 255) if share is None else blues(share, bytes=True)[:3]
            assert tuple(pixels[y, x]) == tuple(colour), (t, p)
    big = plots.plot_confusion(np.eye(34, dtype=int), [f"c{i}" for i in range(34)], tmp_path / "big.png")
    with Image.open(path) as small_image, Image.open(big) as big_image:
        assert big_image.width > small_image.width  # room for the names of 34 classes


def test_class_iou_bars(tmp_path):
    report = metrics_report(np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]]), ["road", "car", "bus"])
    pixels = open_png(plots.plot_class_iou(report, tmp_path / "iou.png"))
    blue = (31, 119, 180)  # matplotlib tab:blue bars
    assert count_colour(pixels, blue) > 1000


@pytest.mark.parametrize("last_iou", [0.95, 0.5, 0.05])
def test_class_iou_legend_covers_no_bar_and_no_value(last_iou):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = [f"class {i}" for i in range(19)]
    per_class = {name: {"iou": 0.9 - 0.04 * i, "present": True} for i, name in enumerate(names)}
    per_class[names[-1]]["iou"] = last_iou  # the bottom bar, where the legend used to sit
    report = {"per_class": per_class, "mIoU": 0.5}
    figure = plots.class_iou_figure(report)
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    (axes,) = figure.axes
    legend = axes.get_legend().get_window_extent(renderer)
    drawn = [bar.get_window_extent(renderer) for bar in axes.patches]
    drawn += [text.get_window_extent(renderer) for text in axes.texts]
    assert len(drawn) == 2 * 19
    assert not any(legend.overlaps(box) for box in drawn)
