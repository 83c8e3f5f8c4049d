"""The model card: Hub metadata the Hub's own parser reads, figures from the report, weak classes named."""

from __future__ import annotations

import pytest

from cityseg.model_card import CardFacts, count_parameters, held_out_text, read_card_metadata, render_card

NAMES = ("road", "sidewalk", "pole", "sky")


def report(**iou) -> dict:
    per_class = {name: {"iou": value, "acc": value} for name, value in iou.items()}
    values = list(iou.values())
    return {"mIoU": sum(values) / len(values), "aAcc": 0.9, "mAcc": 0.7, "per_class": per_class, "split": "test"}


def facts(**changes) -> CardFacts:
    base = CardFacts("someone/streets", "fpn", "lite0", "mine", NAMES, (256, 512), test_set="cities x and y (9)")
    return CardFacts(**{**base.__dict__, **changes})


def test_the_hub_reads_the_metadata_and_the_results():
    from huggingface_hub import ModelCard

    scores = report(road=0.95, sidewalk=0.7, pole=0.12, sky=0.9)
    flip = {**scores, "mIoU": 0.7}
    card = ModelCard(render_card(facts(), scores, flip))
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == (
        "segmentation-models-pytorch",
        "image-segmentation",
        "other",
    )
    assert data.license_link.startswith("https://www.cityscapes-dataset.com") and "cityscapes" in data.datasets
    results = {r.metric_name: r.metric_value for r in data.eval_results}
    assert results["mIoU (one pass)"] == round(100 * scores["mIoU"], 2) and results["mIoU (flip)"] == 70.0
    assert {r.dataset_name for r in data.eval_results} == {"cities x and y (9)"}


def test_the_body_has_every_class_the_weak_ones_and_the_terms():
    text = render_card(facts(), report(road=0.95, sidewalk=0.7, pole=0.12, sky=0.9))
    assert "| pole | 12.0 |" in text and "| road | 95.0 |" in text
    weak = text.split("## Known weak classes")[1].split("##")[0]
    assert "pole (12.0)" in weak and "road" not in weak
    assert "non-commercial research" in text and 'Segmenter.from_pretrained("someone/streets")' in text


def test_with_no_class_under_the_bar_the_three_lowest_are_named():
    text = render_card(facts(), report(road=0.95, sidewalk=0.7, pole=0.5, sky=0.9))
    weak = text.split("## Known weak classes")[1].split("##")[0]
    assert "pole (50.0)" in weak and "sidewalk (70.0)" in weak and "sky (90.0)" in weak and "road" not in weak


def test_a_card_without_figures_has_no_model_index():
    text = render_card(facts(), None)
    assert "model-index" not in read_card_metadata(text) and "## Results" not in text


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        (
            "blocks split ...; held out: test bremen, krefeld (569); val aachen (174) (seed 0)",
            "test bremen, krefeld (569); val aachen (174)",
        ),
        ("seed split: 20 images pooled", "seed split: 20 images pooled"),
    ],
)
def test_the_held_out_part_of_a_split_note(note, expected):
    assert held_out_text(note) == expected


def test_parameters_are_counted_from_the_header_alone(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    save_file(
        {"conv.weight": np.zeros((4, 3, 3, 3), np.float16), "bn.running_mean": np.zeros(4, np.float32)},
        tmp_path / "w.safetensors",
    )
    assert count_parameters(tmp_path / "w.safetensors") == 108  # 4x3x3x3; the BatchNorm statistics are not learned
