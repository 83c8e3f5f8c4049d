"""File helpers: atomic writes leave either the whole new file or the old one, and never a temporary."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from cityseg.errors import CitysegError
from cityseg.files import atomic_path, atomic_write_bytes, atomic_write_text, ensure_writable_dir, natural_key


def test_natural_key_orders_numbers_by_value_and_ignores_case_and_folders():
    names = ["10.jpg", "2.jpg", "1.jpg", "B.jpg", "a.jpg", "img20.png", "img3.png", "img3b.png"]
    assert sorted(names, key=natural_key) == [
        "1.jpg",
        "2.jpg",
        "10.jpg",
        "a.jpg",
        "B.jpg",
        "img3.png",
        "img3b.png",
        "img20.png",
    ]
    assert natural_key("z/1.jpg") < natural_key("a/2.jpg")  # the file name decides, not its folder
    assert natural_key("x/007.jpg") == natural_key("7.jpg")


def test_atomic_path_renames_into_place_and_keeps_the_suffix(tmp_path):
    target = tmp_path / "new" / "deeper" / "figure.png"  # missing folders are made
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp != target
        tmp.write_bytes(b"done")
        assert not target.exists()  # nothing at the target until the block succeeds
    assert target.read_bytes() == b"done"
    assert [p.name for p in target.parent.iterdir()] == ["figure.png"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_text("half writ")
        raise error
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "out.bin", "text, not bytes")  # fails inside the write
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_replace_the_whole_file(tmp_path):
    target = tmp_path / "config.yaml"
    atomic_write_text(target, "a much longer first version\n")
    atomic_write_text(target, "küçük\n")
    assert target.read_bytes() == "küçük\n".encode()  # utf-8, and nothing of the longer file left
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_ensure_writable_dir_creates_the_folder_and_leaves_no_probe(tmp_path):
    folder = ensure_writable_dir(tmp_path / "a" / "b")
    assert folder == tmp_path / "a" / "b" and folder.is_dir()
    assert list(folder.iterdir()) == []
    assert ensure_writable_dir(str(folder)) == folder  # an existing folder is fine


def test_ensure_writable_dir_under_a_file_is_a_one_line_error_naming_it(tmp_path):
    blocker = tmp_path / "FILE"
    blocker.write_text("a file, not a folder")
    with pytest.raises(CitysegError, match=r"cannot write to output folder .*FILE/out") as error:
        ensure_writable_dir(blocker / "out")
    assert "\n" not in str(error.value)
    assert blocker.read_text() == "a file, not a folder"


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs mounted for the test (as root); skipped with the reason where mounting is refused."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount refused'}); injected ENOSPC covers it"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_a_really_full_disk_gives_one_line_and_keeps_the_previous_file(small_disk):
    target = small_disk / "labels.npy"
    atomic_write_bytes(target, b"old" * 1000)
    with pytest.raises(CitysegError, match=r"disk full writing .*labels\.npy \(needs 1\.0 MB, \d+ KB free\)") as error:
        atomic_write_bytes(target, bytes(2**20))
    assert "\n" not in str(error.value)
    assert target.read_bytes() == b"old" * 1000
    assert [p.name for p in small_disk.iterdir()] == ["labels.npy"]


def test_an_injected_full_disk_gives_the_same_line(tmp_path, monkeypatch):
    target = tmp_path / "out" / "metrics.json"

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(CitysegError, match=r"disk full writing .*metrics\.json \(needs 2 bytes, "):
        atomic_write_text(target, "{}")
    monkeypatch.undo()
    assert list(target.parent.iterdir()) == []
