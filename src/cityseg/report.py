"""One self-contained HTML page per run: configuration, metrics tables and every figure, images embedded.

The page has no external assets (figures are base64 ``data:`` URIs, styles are inline), so it can be
mailed or attached to an issue as a single file. What it shows is what it finds in the run folder:

* ``config.yaml`` (or the first ``*.yaml``): the run's configuration;
* every ``*.json`` in the run folder that is a :func:`cityseg.evaluation.metrics_report` (has ``mIoU`` and
  ``per_class``), titled by its file name (``metrics.json`` -> "metrics", ``val_metrics.json`` -> "val
  metrics"), with its other plain entries (split, epochs ...) as run facts and a ``baseline`` report's
  scores beside the model's;
* ``model/cityseg.json`` (any ``*/cityseg.json``): the model summary;
* ``evaluations/*/transfer.json``: each transfer table (one model on several datasets) with its figure;
* every image in ``plots/`` (``.png``, ``.jpg``, ``.svg``): training curves, scores, pictures, others.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from cityseg.errors import CitysegError
from cityseg.files import atomic_write_text, natural_key

REPORT_FILE = "report.html"
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
# the figures plots.py writes, in reading order (curves, scores, pictures); any others follow by name
_FIGURE_ORDER = ("loss", "accuracy", "miou", "class_iou", "confusion", "predictions", "labels")
_MODEL_FIELDS = ("arch", "encoder", "encoder_weights", "class_set", "label_method", "input_size", "mean", "std")
_TRANSFER_FILE = "transfer.json"  # a transfer table (cityseg.transfer.TRANSFER_FILE), under RUN/evaluations/*/

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; } td.absent { color: #999; }
.scores td { font-size: 1.15em; font-weight: 600; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: .85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
"""


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/report.html`` from the run's config, metrics and ``plots/`` figures.

    Args:
        run_dir: a run folder (``runs/<timestamp>``).

    Returns:
        The path of ``report.html`` (written atomically).

    Raises:
        CitysegError: the run folder does not exist.

    Example:
        >>> write_report("runs/latest")  # doctest: +SKIP
        PosixPath('runs/latest/report.html')
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise CitysegError(f"run folder {run} not found; pass a folder made by cityseg train (runs/<run>)")
    sections = [
        _model_section(run),
        *(_metrics_section(title, report) for title, report in _find_metrics(run)),
        *(_transfer_section(path) for path in sorted(run.glob(f"evaluations/*/{_TRANSFER_FILE}"), key=natural_key)),
        _figures_section(run),
        _config_section(run),
    ]
    body = "\n".join(s for s in sections if s) or "<p>Nothing to report yet: no metrics, figures or config.</p>"
    title = f"cityseg run {run.resolve().name}"
    page = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
    target = run / REPORT_FILE
    atomic_write_text(target, page)
    return target


# ---- sections ---------------------------------------------------------------------------------


def _find_metrics(run: Path) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(run.glob("*.json"), key=natural_key):
        report = _read_json(path)
        if isinstance(report, dict) and "mIoU" in report and isinstance(report.get("per_class"), dict):
            found.append((path.stem.replace("_", " "), report))
    return found


def _metrics_section(title: str, report: dict[str, Any]) -> str:
    keys = ("mIoU", "mAcc", "aAcc")
    scores = "<tr><th></th>" + "".join(f"<th>{key} %</th>" for key in keys) + "</tr>"
    scores += "<tr><td>model</td>" + "".join(f"<td>{_percent(report.get(key))}</td>" for key in keys) + "</tr>"
    baseline = report.get("baseline")
    if isinstance(baseline, dict) and "mIoU" in baseline:
        scores += "<tr><td>untrained baseline</td>"
        scores += "".join(f"<td>{_percent(baseline.get(key))}</td>" for key in keys) + "</tr>"
    facts = [
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(str(value))}</td></tr>"
        for key, value in report.items()
        if key not in (*keys, "per_class", "confmat", "baseline") and isinstance(value, str | int | float | bool)
    ]
    rows = []
    for name, entry in report["per_class"].items():
        absent = not entry.get("present", True)
        css = " class='absent'" if absent else ""
        note = "" if not absent else (" (absent)" if not entry.get("predicted") else " (not in truth)")
        note = " (absent)" if absent and report.get("annotated_only") else note
        rows.append(
            f"<tr><td{css}>{html.escape(str(name))}{note}</td><td>{_percent(entry.get('iou'))}</td>"
            f"<td>{_percent(entry.get('acc'))}</td><td>{_count(entry.get('pixels'))}</td></tr>"
        )
    return (
        f"<h2>{html.escape(title)}</h2>\n"
        f"<table class='scores'>{scores}</table>\n"
        + ("<table>\n" + "\n".join(facts) + "\n</table>\n" if facts else "")
        + "<table><tr><th>class</th><th>IoU %</th><th>Acc %</th><th>pixels</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>"
    )


def _transfer_section(path: Path) -> str:
    """A transfer table (``cityseg evaluate RUN --data A --data B``): datasets across, classes down, its figure."""
    table = _read_json(path)
    if not isinstance(table, dict) or not table.get("columns"):
        return ""
    columns = table["columns"]
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(str(c['name']))}</th>" for c in columns) + "</tr>"
    rows = [("split", [c["split"] + (" (own)" if c.get("own") else "") for c in columns])]
    rows.append(("images", [str(c["images"]) for c in columns]))
    rows += [(f"{key} %", [_percent(c.get(key)) for c in columns]) for key in ("aAcc", "mIoU")]
    rows += [(name, [_percent(c["iou"].get(name)) for c in columns]) for name in table.get("names", [])]
    body = "\n".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"
        for name, cells in rows
    )
    figure = path.parent / "plots" / "transfer.png"
    image = ""
    if figure.is_file():
        data = base64.b64encode(figure.read_bytes()).decode("ascii")
        image = f"<figure><img src='data:image/png;base64,{data}' alt='transfer'></figure>"
    title = f"transfer: {path.parent.name}"
    note = "<p>IoU % per class; mIoU over the classes each dataset annotates; - : absent from that dataset.</p>"
    return f"<h2>{html.escape(title)}</h2>\n<table>{head}\n{body}\n</table>\n{note}\n{image}"


def _model_section(run: Path) -> str:
    info_files = sorted(run.glob("*/cityseg.json"), key=natural_key)
    info = _read_json(info_files[0]) if info_files else None
    if not isinstance(info, dict):
        return ""
    rows = [
        f"<tr><td>{field}</td><td>{html.escape(_plain(info[field]))}</td></tr>"
        for field in _MODEL_FIELDS
        if field in info
    ]
    names = info.get("names") or []
    rows.append(f"<tr><td>classes</td><td>{len(names)}: {html.escape(', '.join(map(str, names)))}</td></tr>")
    return "<h2>model</h2>\n<table>\n" + "\n".join(rows) + "\n</table>"


def _figures_section(run: Path) -> str:
    def order(path: Path) -> tuple:
        known = _FIGURE_ORDER.index(path.stem) if path.stem in _FIGURE_ORDER else len(_FIGURE_ORDER)
        return known, natural_key(path)

    figures = sorted(
        (p for p in (run / "plots").glob("*") if p.suffix.lower() in _IMAGE_TYPES and p.is_file()), key=order
    )
    blocks = []
    for path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        mime = _IMAGE_TYPES[path.suffix.lower()]
        caption = html.escape(path.stem.replace("_", " "))
        blocks.append(
            f"<figure><img src='data:{mime};base64,{data}' alt='{caption}'><figcaption>{caption}</figcaption></figure>"
        )
    return "<h2>figures</h2>\n" + "\n".join(blocks) if blocks else ""


def _config_section(run: Path) -> str:
    candidates = (
        [run / "config.yaml"] if (run / "config.yaml").is_file() else sorted(run.glob("*.yaml"), key=natural_key)
    )
    if not candidates:
        return ""
    try:
        text = candidates[0].read_text()
    except (OSError, UnicodeDecodeError):
        return ""
    return f"<h2>configuration ({html.escape(candidates[0].name)})</h2>\n<pre>{html.escape(text)}</pre>"


# ---- helpers ----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # a damaged or foreign JSON file is left out of the report, not fatal


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _count(value: Any) -> str:
    return "" if value is None else f"{int(value):,}"


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " x ".join(map(str, value)) if all(isinstance(v, int) for v in value) else ", ".join(map(str, value))
    return str(value)
