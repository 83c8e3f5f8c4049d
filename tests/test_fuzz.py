"""Every reader of untrusted input, fuzzed: generated and mutated inputs (``fuzz_targets``) for a short seeded budget.

Each target keeps the README's promise on every input: a result, or a one-line ``CitysegError`` naming the input;
never another exception, a hang, memory out of proportion, or a file left behind. The suite's Hypothesis profile
(``conftest.py``) derandomizes the examples (the same inputs on every run) and writes no example database;
``benchmarks/fuzz.py`` runs the same targets for minutes with fresh seeds.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz_targets import TARGETS, BrokenPromise, Target, check, mutated

# inputs per target in the suite: the slow readers (a network built per model folder, a video decoded) get fewer
EXAMPLES = {"model-folder": 15, "video": 30, "checkpoint": 40, "layout": 40, "export": 40}
DEFAULT_EXAMPLES = 60


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_reader_keeps_its_promise_on_generated_and_mutated_input(name):
    fuzzed = TARGETS[name]

    @settings(max_examples=EXAMPLES.get(name, DEFAULT_EXAMPLES))
    @given(fuzzed.inputs())
    def run(value):
        check(fuzzed, value)

    run()


def test_the_targets_cover_every_reader_the_issue_names():
    assert set(TARGETS) >= {
        "photo", "upload", "array", "pair", "label-labelids", "label-trainids", "label-color", "layout", "video",
        "class-table", "config", "set", "model-folder", "checkpoint", "class-list", "export",
    }  # fmt: skip


def test_the_valid_seeds_are_read_as_results():
    """The starting files are valid: unmutated, each reader returns a result for them."""
    from fuzz_seeds import label_seeds, model_seed, pair_seeds, photo_seeds, video_seeds

    for data in photo_seeds():
        assert check(TARGETS["photo"], (data, None)) is None
    for data in pair_seeds()[:2]:  # JPEG and PNG; the palette one lost the exact colours, as palettes do
        assert check(TARGETS["pair"], (data, ".png")) is None
    assert check(TARGETS["label-labelids"], (label_seeds()[0], None)) is None
    assert check(TARGETS["label-color"], (label_seeds()[2], None)) is None
    for data in video_seeds():
        assert check(TARGETS["video"], (data, None)) is None
    assert check(TARGETS["model-folder"], dict(model_seed())) is None


def test_the_property_fails_on_a_reader_that_breaks_it(tmp_path):
    """check() can fail: a reader that raises a plain exception, a two-line error, or names nothing, is caught."""
    from cityseg.errors import CitysegError

    def raising(error):
        def read(value, folder):
            raise error

        return read

    class TwoLines(CitysegError):  # CitysegError escapes line breaks itself; a subclass could still break one
        def __str__(self) -> str:
            return "one\ntwo input"

    for error in (ValueError("bad"), TwoLines("x"), CitysegError("a file is bad")):
        with pytest.raises(BrokenPromise):
            check(Target("broken", lambda: st.just(b""), raising(error)), b"")

    def leaves_a_file(value, folder):
        (folder / "half-written.tmp").write_bytes(b"x")

    with pytest.raises(BrokenPromise, match="half-written"):
        check(Target("leaky", lambda: st.just(b""), leaves_a_file), b"")


def test_a_reader_that_hangs_is_stopped_and_reported(monkeypatch):
    import time

    import fuzz_targets

    monkeypatch.setattr(fuzz_targets, "SECONDS_PER_INPUT", 0.2)
    with pytest.raises(BrokenPromise, match="no answer"):
        check(Target("hangs", lambda: st.just(b""), lambda value, folder: time.sleep(5)), b"")


@settings(max_examples=30)
@given(mutated([b"0123456789abcdef" * 4]))
def test_mutations_stay_small(data):
    assert len(data) <= 4096 + 64 * 4 + 64
