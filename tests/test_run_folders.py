"""Run folders and model folders (cityseg.run_folders): ``runs/latest`` and finding a run from any path."""

from __future__ import annotations

from pathlib import Path

from cityseg.run_folders import resolve_run, update_latest


def test_latest_falls_back_to_a_text_file_without_symlinks(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    update_latest(first)
    assert (tmp_path / "latest").is_symlink() and resolve_run(tmp_path / "latest") == first.resolve()
    update_latest(second)  # replaced, not stacked
    assert resolve_run(tmp_path / "latest") == second.resolve()

    def no_symlinks(self, *args, **kwargs):
        raise OSError("symlinks not supported")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    update_latest(first)
    assert not (tmp_path / "latest").is_symlink()
    assert (tmp_path / "latest").read_text().strip() == "a"
    assert resolve_run(tmp_path / "latest") == first.resolve()
