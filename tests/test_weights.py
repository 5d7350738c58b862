"""ImageNet weights: torchvision's download into torch's cache, a clear message offline, a file by path."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torchvision import models

from whypop.errors import InputError
from whypop.model import build_model


@pytest.fixture
def empty_hub(tmp_path):
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(before)


def test_offline_names_the_file_the_folder_and_the_setting(empty_hub, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "urlopen", offline)  # where torchvision's download goes out
    with pytest.raises(InputError) as info:
        build_model("resnet34", 4, pretrained="imagenet")
    message = str(info.value)
    assert "resnet34-b627a593.pth" in message
    assert str(empty_hub / "checkpoints") in message
    assert "train.weights_file" in message and 'train.pretrained = "none"' in message
    assert "Name or service not known" in message
    assert "\n" not in message


def test_weights_in_torch_cache_are_used_without_a_download(empty_hub, monkeypatch):
    state = models.get_model("squeezenet1_1", weights=None).state_dict()
    state["features.0.bias"] = torch.full_like(state["features.0.bias"], 0.25)
    name = models.get_model_weights("squeezenet1_1").DEFAULT.url.rsplit("/", 1)[1]
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(state, empty_hub / "checkpoints" / name)
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: pytest.fail("downloaded although cached"))
    model = build_model("squeezenet1_1", 3, pretrained="imagenet")
    assert torch.equal(model.state_dict()["features.0.bias"], state["features.0.bias"])


def test_weights_file_given_by_path(tmp_path, monkeypatch):
    state = models.get_model("squeezenet1_1", weights=None).state_dict()
    state["features.0.weight"] = torch.full_like(state["features.0.weight"], 0.5)
    path = tmp_path / "my-imagenet.pth"
    torch.save(state, path)
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: pytest.fail("downloaded although a file was given"))
    model = build_model("squeezenet1_1", 3, pretrained="imagenet", weights_file=str(path))
    assert torch.equal(model.state_dict()["features.0.weight"], state["features.0.weight"])
    assert model.state_dict()["classifier.1.weight"].shape[0] == 3  # a new head for 3 genres

    with pytest.raises(InputError, match="not found: .*missing.pth .*train.weights_file"):
        build_model("squeezenet1_1", 3, pretrained="imagenet", weights_file=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(InputError, match="cannot read ImageNet weights file"):
        build_model("squeezenet1_1", 3, pretrained="imagenet", weights_file=str(tmp_path / "junk.pth"))


def test_from_scratch_needs_no_weights(empty_hub, monkeypatch):
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: pytest.fail("downloaded for pretrained=none"))
    model = build_model("resnet18", 2, pretrained="none")
    assert model.fc.out_features == 2
