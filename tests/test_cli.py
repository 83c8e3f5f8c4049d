"""The command line: its registry, what parsing imports, one-line errors, and defaults shared with the modules."""

from __future__ import annotations

import argparse
import inspect
import re
import subprocess
import sys

import pytest

from cityseg.cli import COMMANDS, HELP_ORDER, LABEL_FLAGS, TRAIN_FLAGS, build_parser, main
from cityseg.config import Config

EVERY_COMMAND = ("synth", "label", "train", "evaluate", "demo", "predict", "export", "serve", "models", "push")
HEAVY = ("torch", "PIL", "numpy", "cityseg.predict")  # what parsing the command line must not load


def subcommand(name: str) -> argparse.ArgumentParser:
    parsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return parsers.choices[name]


def option(command: str, flag: str) -> argparse.Action:
    return subcommand(command)._option_string_actions[flag]


# ---- the registry -------------------------------------------------------------------------------


def test_the_registry_lists_every_command_in_help_order(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per command
    assert sorted(COMMANDS) == sorted(EVERY_COMMAND) and HELP_ORDER == EVERY_COMMAND
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listing = capsys.readouterr().out
    positions = [listing.index(f"    {name} ") for name in EVERY_COMMAND]
    assert positions == sorted(positions)  # the pipeline's order, whatever order the modules registered in
    for name, command in COMMANDS.items():
        assert f"    {name}" in listing and command.help in listing
        assert subcommand(name).get_default("run") is command.run


def test_no_command_prints_the_help_and_fails(capsys):
    assert main([]) == 1
    assert capsys.readouterr().out.startswith("usage: cityseg")


# ---- what parsing costs -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], *([name] for name in EVERY_COMMAND)], ids=["cityseg", *EVERY_COMMAND])
def test_help_imports_neither_torch_nor_pil_nor_numpy_nor_predict(argv):
    code = (
        "import contextlib, io, sys\n"
        "from cityseg.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({[*argv, '--help']!r})\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stderr


# ---- bad input: exit 2 and one line -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["label"], "no dataset: pass DATA"),
        (["label", "DATA", "--config", "{tmp}/missing.yaml"], "cannot read config"),
        (["train"], "no dataset: pass DATA"),
        (["train", "DATA", "--epochs", "three"], "bad value 'three' for train.max_epochs"),
        (["train", "DATA", "--resume", "{tmp}/run", "--config", "c.yaml"], "--resume continues a run"),
        (["train", "DATA", "--resume", "{tmp}/run"], "run folder .* does not exist"),
        (["demo", "--set", "train.max_epochs"], "--set expects key=value"),
        (["predict", "{tmp}/nothing", "a.jpg", "--out", "{tmp}/out"], "model .*nothing not found"),
        (["export", "{tmp}/nothing"], "nothing"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_input_is_exit_2_and_one_error_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what the heavy commands set for themselves
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("cityseg: error: ")
    assert re.search(message, line), line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "cityseg: error: argument COMMAND: invalid choice: 'nope'"),
        (["train", "--split", "random"], "cityseg train: error: argument --split: invalid choice: 'random'"),
        (["predict", "MODEL"], "cityseg predict: error: the following arguments are required: INPUT"),
        (["export", "MODEL", "--quantize", "int4"], "cityseg export: error: argument --quantize: invalid choice"),
        (["serve", "MODEL", "--port", "eighty"], "cityseg serve: error: argument --port: invalid int value"),
        (["synth", "out", "--count", "many"], "cityseg synth: error: argument --count: invalid int value"),
    ],
)
def test_bad_options_are_exit_2_with_the_usage_and_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("usage: cityseg")
    assert lines[-1].startswith(message)
    assert not any(": error:" in line for line in lines[:-1])


# ---- flags and the settings they set --------------------------------------------------------------


@pytest.mark.parametrize(("command", "flags"), [("train", TRAIN_FLAGS), ("label", LABEL_FLAGS)])
def test_every_flag_sets_a_real_setting(command, flags):
    config = Config()
    for flag, key in flags.items():
        assert f"--{flag.replace('_', '-')}" in subcommand(command)._option_string_actions, flag
        section, name = key.split(".")
        config.set(key, getattr(getattr(config, section), name))  # a real, type-checked setting


def test_train_help_shows_the_config_defaults():
    text = subcommand("train").format_help()
    defaults = Config()
    for shown in (defaults.model.arch, defaults.model.encoder, defaults.train.precision, str(defaults.optim.lr)):
        assert f"(default {shown})" in text
    assert f"(default {defaults.data.size[0]})" in text  # square sizes read as one number


def test_label_runs_the_importable_function_and_prints_its_summary(tmp_path, capsys, pair_images):
    from cityseg.labels import label_folder

    pair_images.write(tmp_path / "data" / "train", 2)
    assert main(["label", str(tmp_path / "data"), "--no-cache", "--workers", "1", "--classes", "categories"]) == 0
    printed = capsys.readouterr().out
    config = Config().override([f"data.root={tmp_path / 'data'}", "data.workers=1", "labels.classes=categories"])
    assert printed == f"{label_folder(config, use_cache=False)}\n"
    assert printed.startswith(f"labelled 2 of 2 images in {tmp_path / 'data'} (palette-categories-")


# ---- defaults and choices come from the modules ---------------------------------------------------


def parameters(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


def test_choices_are_the_registries():
    from cityseg.backends import BACKEND_CHOICES
    from cityseg.classes import CLASS_SETS
    from cityseg.config import choices
    from cityseg.export import CALIBRATION_METHODS, FORMATS, QUANTIZE
    from cityseg.labels import LABELLERS
    from cityseg.outputs import ID_KINDS
    from cityseg.splits import SPLIT_NAMES, SPLITS

    assert tuple(option("train", "--split").choices) == SPLITS == choices("data.split")
    assert tuple(option("evaluate", "--split").choices) == (*SPLIT_NAMES, "all")
    assert tuple(option("label", "--method").choices) == tuple(LABELLERS)
    assert option("label", "--classes").choices is None  # a built-in set's name or a class table's file
    assert all(name in option("label", "--classes").help for name in CLASS_SETS)
    for command in ("train", "label", "evaluate"):
        assert tuple(option(command, "--label-format").choices) == choices("data.label_format")
    from cityseg.layouts import LAYOUTS

    assert tuple(option("synth", "--layout").choices) == ("pairs", *LAYOUTS)
    for command in ("label", "predict", "export"):
        assert tuple(option(command, "--mask-side").choices) == choices("data.mask_side")
    for command in ("predict", "serve"):
        assert tuple(option(command, "--backend").choices) == BACKEND_CHOICES
    assert tuple(option("predict", "--ids").choices) == ID_KINDS
    assert tuple(option("export", "--format").choices) == FORMATS
    assert tuple(option("export", "--quantize").choices) == QUANTIZE
    assert tuple(option("export", "--calibrate-method").choices) == CALIBRATION_METHODS


def test_defaults_are_the_functions_defaults():
    from cityseg.demo import run_demo
    from cityseg.engine import PredictOptions
    from cityseg.evaluation import EvaluateOptions
    from cityseg.export import ExportOptions
    from cityseg.synth import write_scenes
    from cityseg.video import VideoOptions

    def assert_same(command: str, function, flags: dict[str, str]) -> None:
        wanted = parameters(function)
        for flag, name in flags.items():
            assert option(command, flag).default == wanted[name], (command, flag)

    assert_same("synth", write_scenes, {"--count": "count", "--seed": "seed", "--val-fraction": "val_fraction"})
    assert_same("demo", run_demo, {"--out": "out", "--count": "count", "--seed": "seed"})
    assert_same("evaluate", EvaluateOptions, {"--split": "split"})
    flags = {"--backend": "backend", "--ids": "ids", "--mask-side": "mask_side", "--batch-size": "batch_size"}
    assert_same("predict", PredictOptions, {**flags, "--alpha": "overlay_alpha"})
    assert_same("predict", VideoOptions, {"--every": "every", "--smooth": "smooth", "--frames": "frames"})
    flags = {"--mask-side": "mask_side", "--calibration-images": "calibration_images", "--opset": "opset"}
    flags |= {"--check-images": "check_images", "--calibrate-method": "calibrate_method", "--seed": "seed"}
    assert_same("export", ExportOptions, flags)
    assert option("export", "--min-agreement").default / 100 == parameters(ExportOptions)["min_agreement"]


def test_serve_defaults_are_the_servers():
    pytest.importorskip("fastapi", reason="cityseg serve needs fastapi")
    from cityseg.engine import PredictOptions
    from cityseg.serve import ServeSettings, serve

    wanted = parameters(serve) | {"backend": parameters(PredictOptions)["backend"]}  # serve's options' backend
    for flag, name in {"--host": "host", "--port": "port", "--backend": "backend", "--log-level": "log_level"}.items():
        assert option("serve", flag).default == wanted[name], flag
    args = build_parser().parse_args(["serve", "MODEL"])
    settings = ServeSettings()
    assert int(args.max_upload_mb * 2**20) == settings.max_upload_bytes
    assert int(args.max_megapixels * 1e6) == settings.max_pixels
    assert (args.max_side, args.queue_size, args.max_batch) == (
        settings.max_side,
        settings.queue_size,
        settings.max_batch,
    )
