"""The model card: ``README.md`` beside a model's weights, in the Hugging Face Hub's format.

YAML metadata first (``library_name``, ``pipeline_tag``, ``license``, ``tags``, ``datasets`` and a
``model-index`` with the test figures, which the Hub shows as the model's results), then what a user
needs: how to load it, its figures on held-out data with every class, the classes it gets wrong, how it
was trained, its input and speed, the data's licence terms and how to reproduce it. Every trained run
writes one from its own figures (``runs/<run>/model/README.md``); ``cityseg push`` uploads it.

Pure text: no torch, numpy or PIL.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cityseg.run_folders import SPLITS_FILE

LIBRARY_NAME = "segmentation-models-pytorch"  # the weights load with smp.from_pretrained alone; cityseg adds the rest
DATA_TERMS = (
    "The weights inherit the terms of the data they were trained on. For the Cityscapes images (and the "
    "pix2pix/Kaggle pairs made from them) that is the Cityscapes licence: **non-commercial research and "
    "teaching only**; the images may not be redistributed. See https://www.cityscapes-dataset.com/license/ "
    "before using this model for anything else. cityseg's code is MIT-licensed."
)
WEAK_IOU = 0.30  # classes under this IoU are listed as weak (at least the three lowest are)


@dataclass(frozen=True)
class CardFacts:
    """What a model card says besides the figures.

    Args:
        name: the model's name as a user loads it (a built-in name, ``owner/name`` on the Hub, or a folder).
        arch, encoder: the smp architecture and encoder.
        class_set: the class set's name; ``class_names`` its classes in output order.
        input_size: (h, w) the model runs at.
        parameters: the network's parameter count.
        trained_on: the training data, in words.
        test_set: the held-out images the figures come from, in words (cities, counts).
        training: facts about the run, ``label: value`` (steps, epochs, minutes, recipe ...).
        sections: further ``(title, markdown)`` sections (speed, reproduce ...), in order.
        weights_sha256: the SHA-256 of ``model.safetensors``, to check a copy against (empty: not known yet).
        license, license_name, license_link: the Hub's licence fields.
    """

    name: str
    arch: str
    encoder: str
    class_set: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    parameters: int = 0
    trained_on: str = "Cityscapes image pairs"
    test_set: str = ""
    training: Mapping[str, Any] = field(default_factory=dict)
    sections: Sequence[tuple[str, str]] = ()
    weights_sha256: str = ""
    license: str = "other"
    license_name: str = "cityscapes-terms"
    license_link: str = "https://www.cityscapes-dataset.com/license/"


def card_metadata(facts: CardFacts, metrics: Mapping | None, flip: Mapping | None = None) -> dict[str, Any]:
    """The card's YAML metadata (the Hub's model card fields), figures in percent."""
    metadata: dict[str, Any] = {
        "library_name": LIBRARY_NAME,
        "pipeline_tag": "image-segmentation",
        "license": facts.license,
    }
    if facts.license == "other":
        metadata.update(license_name=facts.license_name, license_link=facts.license_link)
    metadata["tags"] = ["cityseg", "semantic-segmentation", "street-scenes", "cityscapes", LIBRARY_NAME, facts.arch]
    metadata["datasets"] = ["cityscapes"]
    results = []
    for label, values in (("one pass", metrics), ("flip", flip)):
        if values and values.get("mIoU") is not None:
            results.append(_result(facts, label, values))
    if results:
        metadata["model-index"] = [{"name": facts.name, "results": results}]
    return metadata


def _result(facts: CardFacts, label: str, values: Mapping) -> dict[str, Any]:
    """One model-index result: the test figures of one way of predicting."""
    figures = [("mean_iou", "mIoU"), ("accuracy", "aAcc"), ("mean_accuracy", "mAcc")]
    return {
        "task": {"type": "image-segmentation", "name": "Semantic Segmentation"},
        "dataset": {
            "name": facts.test_set or facts.trained_on,
            "type": "cityscapes",
            "split": str(values.get("split", "test")),
        },
        "metrics": [
            {"type": kind, "value": round(100 * float(values[key]), 2), "name": f"{key} ({label})"}
            for kind, key in figures
            if values.get(key) is not None
        ],
    }


def render_card(facts: CardFacts, metrics: Mapping | None = None, flip: Mapping | None = None) -> str:
    """The whole ``README.md``: YAML metadata, then the sections (see the module)."""
    metadata = yaml.safe_dump(card_metadata(facts, metrics, flip), sort_keys=False, allow_unicode=True)
    parts = [f"---\n{metadata}---\n", _summary(facts), _usage(facts)]
    if metrics and metrics.get("mIoU") is not None:
        parts += [_results(facts, metrics, flip), _weak_classes(metrics)]
    parts += [_training(facts), _input(facts)]
    parts += [f"## {title}\n\n{text.strip()}\n" for title, text in facts.sections]
    parts += [f"## Licence\n\n{DATA_TERMS}\n", _files(facts.weights_sha256)]
    return "\n".join(part for part in parts if part)


def _summary(facts: CardFacts) -> str:
    size = f" ({facts.parameters / 1e6:.1f} M parameters)" if facts.parameters else ""
    return (
        f"# {facts.name}\n\n"
        f"Semantic segmentation of street photos: {facts.arch.upper()} with a `{facts.encoder}` encoder{size}, "
        f"trained on {facts.trained_on}. It labels every pixel with one of {len(facts.class_names)} classes "
        f"(`{facts.class_set}`: {', '.join(facts.class_names)}). Made with cityseg.\n"
    )


def _usage(facts: CardFacts) -> str:
    return (
        "## Use it\n\n"
        "```bash\n"
        "pip install cityseg\n"
        f"cityseg predict {facts.name} street.jpg            # label PNG, colours, overlay in predictions/\n"
        f"cityseg evaluate {facts.name} --data PAIRS_FOLDER  # its figures on your labelled photos\n"
        f"cityseg train PAIRS_FOLDER --init {facts.name}     # fine-tune it on your own data\n"
        "```\n\n"
        "```python\n"
        "from cityseg.engine import Segmenter\n\n"
        f'segmenter = Segmenter.from_pretrained("{facts.name}")\n'
        'classes = segmenter.predict("street.jpg")  # (H, W) class indices at the photo\'s size\n'
        "```\n\n"
        "The weights alone also load in segmentation-models-pytorch (`smp.from_pretrained(FOLDER)`); the input "
        "size, normalisation and class names are in `cityseg.json`.\n"
    )


def _results(facts: CardFacts, metrics: Mapping, flip: Mapping | None) -> str:
    where = f" on {facts.test_set}" if facts.test_set else ""
    ways = [("one pass", metrics)] + ([("flip", flip)] if flip else [])
    header = "| | " + " | ".join(label for label, _ in ways) + " |\n|---|" + "---:|" * len(ways) + "\n"
    rows = "".join(
        f"| {key} | " + " | ".join(_percent(values.get(key)) for _, values in ways) + " |\n"
        for key in ("mIoU", "aAcc", "mAcc")
    )
    per_class = metrics.get("per_class") or {}
    class_rows = "".join(
        f"| {name} | "
        + " | ".join(_percent((values.get("per_class") or {}).get(name, {}).get("iou")) for _, values in ways)
        + " |\n"
        for name in per_class
    )
    table = f"\n| IoU per class | {' | '.join(label for label, _ in ways)} |\n|---|{'---:|' * len(ways)}\n{class_rows}"
    return f"## Results\n\nHeld-out figures{where} (percent; flip: logits averaged with the mirror image's).\n\n" + (
        header + rows + (table if class_rows else "")
    )


def _weak_classes(metrics: Mapping) -> str:
    scores = {
        name: float(values["iou"])
        for name, values in (metrics.get("per_class") or {}).items()
        if isinstance(values, Mapping) and values.get("iou") is not None
    }
    if not scores:
        return ""
    ranked = sorted(scores, key=scores.get)
    weak = [name for name in ranked if scores[name] < WEAK_IOU] or ranked[:3]
    listed = ", ".join(f"{name} ({100 * scores[name]:.1f})" for name in weak)
    return (
        "## Known weak classes\n\n"
        f"IoU under {100 * WEAK_IOU:.0f} on the held-out images: {listed}. Such classes are thin, small or rare in "
        "the training photos; expect them to be missed or merged with what surrounds them.\n"
    )


def _training(facts: CardFacts) -> str:
    lines = "".join(f"- {label}: {value}\n" for label, value in facts.training.items())
    test = f"- held out: {facts.test_set}\n" if facts.test_set else ""
    return f"## Training\n\n- data: {facts.trained_on}\n{test}{lines}"


def _input(facts: CardFacts) -> str:
    h, w = facts.input_size
    return (
        "## Input\n\n"
        f"Photos of any size are resized to {w}x{h} (width x height), normalised as `cityseg.json` says, and the "
        "scores resized back to the photo's size before the argmax, so labels come at the photo's own resolution.\n"
    )


def _files(weights_sha256: str = "") -> str:
    digest = f" (`model.safetensors` sha256 `{weights_sha256}`)" if weights_sha256 else ""
    return (
        "## Files\n\n"
        f"- `model.safetensors`, `config.json`: the network (segmentation-models-pytorch's layout){digest}\n"
        "- `cityseg.json`: classes, colours, label ids, input size and normalisation\n"
        "- `metrics.json`: the held-out figures above, with the confusion matrix when there is one\n"
        "- `model.onnx` (when present): the same network for ONNX Runtime\n"
    )


def _percent(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.1f}"


def read_card_metadata(text: str) -> dict[str, Any]:
    """The YAML metadata of a card's text ({} when it has none)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    values = yaml.safe_load(text[4:end]) if end > 0 else None
    return values if isinstance(values, dict) else {}


def facts_from_info(info: Any, name: str, weights: str | os.PathLike | None = None, parameters: int = 0) -> CardFacts:
    """The card facts a model folder's ``cityseg.json`` gives (:class:`~cityseg.models.ModelInfo` ``info``).

    Args:
        name: how a user loads the model.
        weights: its ``model.safetensors``, once written: the parameter count and SHA-256 are read from it.
        parameters: the parameter count, when there is no weights file to read it from.
    """
    facts = CardFacts(
        name=name,
        arch=info.arch,
        encoder=info.encoder,
        class_set=info.class_set_name,
        class_names=tuple(info.names),
        input_size=tuple(info.input_size),
        parameters=parameters,
        training={"encoder start": info.encoder_weights},
    )
    return with_weights(facts, weights)


def with_weights(facts: CardFacts, weights: str | os.PathLike | None) -> CardFacts:
    """``facts`` with the parameter count and SHA-256 read from ``weights`` (a ``model.safetensors``), if given."""
    if weights is None:
        return facts
    return replace(facts, parameters=count_parameters(weights), weights_sha256=file_sha256(weights))


def facts_from_run(name: str, info: Any, config: Any, report: Mapping, test_set: str = "") -> CardFacts:
    """The card facts of a trained run from its ModelInfo, its Config and its test report.

    Args:
        name: how a user loads the model (the model folder's path, or its Hub id when pushed).
        info: the model's :class:`~cityseg.models.ModelInfo`.
        config: the run's :class:`~cityseg.config.Config`.
        report: the run's ``metrics.json`` (steps, epochs, fit_seconds ...).
        test_set: the held-out images, in words.
    """
    data, optim, augment = config.data, config.optim, config.augment
    recipe = f"{optim.optimizer}, peak LR {optim.lr:g}, {optim.schedule} schedule, loss {optim.loss}"
    recipe += f", batch {data.batch_size}, images at {data.size[1]}x{data.size[0]}"
    if augment.enabled:
        recipe += f"; {augment.crop[1]}x{augment.crop[0]} crops, scale {augment.scale[0]:g}-{augment.scale[1]:g}"
        recipe += ", flips, colour jitter" if augment.hflip else ""
    training = {
        "steps": report.get("steps"),
        "epochs": report.get("epochs"),
        "minutes": round(float(report["fit_seconds"]) / 60, 1) if report.get("fit_seconds") else None,
        "recipe": recipe,
        "labels": f"{config.labels.method} ({info.class_set_name})",
        "encoder start": info.encoder_weights,
        "started from": getattr(config.model, "init", "") or None,
        "precision": config.train.precision,
    }
    root = str(data.root).rstrip("/").rsplit("/", 1)[-1] or "the training data"
    return replace(
        facts_from_info(info, name),
        trained_on=f"`{root}` ({data.split} split)",
        test_set=test_set,
        training={label: value for label, value in training.items() if value not in (None, "")},
    )


def held_out_text(note: str) -> str:
    """What a split's note says was held out (``test bremen, krefeld, cologne (569); val aachen (174)``)."""
    match = re.search(r"held out: (.*?)(?: \(seed \d+\))?$", note)
    return match[1] if match else note


def run_facts(
    run_dir: str | os.PathLike,
    info: Any,
    config: Any,
    report: Mapping,
    name: str,
    weights: str | os.PathLike | None = None,
) -> CardFacts:
    """:func:`facts_from_run` with the held-out images read from the run's ``splits.json``, and the parameter
    count and SHA-256 of ``weights`` (the model's ``model.safetensors``) when it is given: a run that is
    finishing has not written its weights yet, and those of an earlier session are not this card's."""
    run_dir = Path(run_dir)
    splits = run_dir / SPLITS_FILE
    try:
        note = json.loads(splits.read_text()).get("note", "") if splits.is_file() else ""
    except (OSError, ValueError, AttributeError):
        note = ""
    return with_weights(facts_from_run(name, info, config, report, test_set=held_out_text(str(note))), weights)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """(the header of a safetensors file, the byte offset its tensor data starts at): names, dtypes, shapes and
    ``data_offsets`` relative to that start, read without loading a tensor."""
    with open(path, "rb") as file:
        size = int.from_bytes(file.read(8), "little")
        return json.loads(file.read(size)), 8 + size


def count_parameters(path: str | os.PathLike) -> int:
    """The learned values in a safetensors file, from its header alone (normalisation statistics left out)."""
    header, _ = safetensors_header(path)
    return sum(
        math.prod(entry["shape"])
        for key, entry in header.items()
        if key != "__metadata__" and not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
