"""Every error type of the package crosses a process boundary as itself (pickling), and prints as one line."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest

import cityseg
from cityseg.errors import CitysegError, first_line


def all_error_types() -> list[type[CitysegError]]:
    """CitysegError and every subclass defined anywhere in the package (every module imported first)."""
    for module in pkgutil.walk_packages(cityseg.__path__, "cityseg."):
        if module.name.startswith("cityseg.synth.props") or module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)
    found, todo = [], [CitysegError]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo += kind.__subclasses__()
    return sorted(set(found), key=lambda kind: f"{kind.__module__}.{kind.__qualname__}")


def example(kind: type[CitysegError]) -> CitysegError:
    """One instance of ``kind``, its constructor's every required argument filled with a picklable value."""
    if not any("__init__" in vars(c) for c in kind.__mro__ if issubclass(c, CitysegError)):  # a message is all
        return kind("photo.jpg is broken; replace it")
    arguments = {}
    for name, parameter in list(inspect.signature(kind).parameters.items()):
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty:
            arguments[name] = "photo.jpg is broken; replace it" if name == "message" else {"field": name}
    return kind(**arguments) if arguments else kind("photo.jpg is broken; replace it")


ERROR_TYPES = all_error_types()


def test_the_walk_finds_the_error_types_with_extra_fields():
    names = {kind.__name__ for kind in ERROR_TYPES}
    assert {"CitysegError", "DecodeError", "ImageTooLargeError", "VideoCutShortError"} <= names
    assert len(ERROR_TYPES) >= 10


@pytest.mark.parametrize("kind", ERROR_TYPES, ids=lambda kind: kind.__name__)
def test_every_error_type_survives_pickling_with_its_message_and_fields(kind):
    error = example(kind)
    error.add_note("a note")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is kind
    assert str(back) == str(error) and back.args == error.args
    assert vars(back) == vars(error)  # source, reason, size, summary ... and the note


def test_an_error_raised_in_a_worker_process_reaches_the_parent_as_itself():
    from concurrent.futures import ProcessPoolExecutor

    from cityseg.images import EmptyImageError, decode_image

    with ProcessPoolExecutor(1) as pool, pytest.raises(EmptyImageError) as raised:
        pool.submit(decode_image, b"", None, name="train/2.jpg").result()
    assert raised.value.source == "train/2.jpg"
    assert "train/2.jpg" in str(raised.value) and "0 bytes" in str(raised.value)


def test_control_characters_of_a_file_name_are_escaped_so_the_message_stays_one_line():
    """Found by fuzzing the layouts: a photo named "\\r.png" split the error of a folder into two lines."""
    error = CitysegError("1 photo without a label (images/train/\r.png\x1e\u2028)")
    assert str(error) == "1 photo without a label (images/train/\\x0d.png\\x1e\\u2028)"
    assert len(str(error).splitlines()) == 1 and error.args[0].endswith("\u2028)")  # the data is kept as it was


@pytest.mark.parametrize(
    ("message", "line"),
    [("one\ntwo", "one"), ("", "ValueError"), ("\nafter a blank", "ValueError")],
)
def test_first_line(message, line):
    assert first_line(ValueError(message)) == line
