"""The cityseg.labels package as a whole: its public names, and ``cityseg label``."""

from __future__ import annotations

from PIL import Image

from cityseg.cli import main


def test_every_public_name_is_importable_from_the_package():
    import importlib
    import inspect
    import pkgutil

    import cityseg.labels as labels
    from cityseg.labels import cache, colour_lookup, dataset, kmeans, palette, registry

    public = {
        name
        for name, value in vars(labels).items()
        if not name.startswith("_") and not inspect.ismodule(value) and type(value).__module__ != "__future__"
    }
    assert sorted(labels.__all__) == sorted(public)  # __all__ lists exactly the names the package gives
    modules = [importlib.import_module(f"{labels.__name__}.{m.name}") for m in pkgutil.iter_modules(labels.__path__)]
    for name in labels.__all__:  # each is the very object of the module it comes from, not a copy
        assert any(getattr(module, name, None) is getattr(labels, name) for module in modules), name
    assert labels.PaletteLabeller is palette.PaletteLabeller and labels.KMeansLabeller is kmeans.KMeansLabeller
    assert labels.LabelCache is cache.LabelCache and labels.label_dataset is dataset.label_dataset
    assert labels.make_labeller is registry.make_labeller and labels.UNCERTAIN == colour_lookup.UNCERTAIN
    assert labels._TABLES is colour_lookup._TABLES  # clearing it from the package clears the tables' cache


def test_cli_label(tmp_path, capsys, pair_images):
    pair_images.write(tmp_path / "data" / "train", 3)
    (tmp_path / "data" / "train" / "9.jpg").write_text("not an image")
    args = ["label", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"), "--workers", "1"]

    assert main(args) == 2
    assert "9.jpg" in capsys.readouterr().err

    figure = tmp_path / "figure.png"
    assert main([*args, "--skip-bad", "--show", "2", "--out", str(figure), "--set", "labels.max_distance=40"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1" in out and "9.jpg" in out and "road" in out and "-d40-" in out
    assert Image.open(figure).size[0] > 100

    assert main([*args, "--skip-bad", "--classes", "categories"]) == 0
    assert "flat" in capsys.readouterr().out

    blocked = tmp_path / "blocker"
    blocked.write_text("")
    assert main([*args, "--skip-bad", "--show", "1", "--out", str(blocked / "f.png")]) == 2
    assert "cannot write figure" in capsys.readouterr().err


def test_cli_label_does_not_import_torch(tmp_path, pair_images):
    import subprocess
    import sys

    pair_images.write(tmp_path / "data", 2)
    code = (
        "import sys; from cityseg.cli import main; "
        f"main(['label', {str(tmp_path / 'data')!r}, '--no-cache', '--workers', '1']); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
