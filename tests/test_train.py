"""Training: a tiny run end to end, resume, the frozen-part cache, import, errors, the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import pipelines.train as train_stage
from pipelines.common import load_current
from whypop import train as T
from whypop.config import Config
from whypop.errors import ConfigError, InputError
from whypop.model import CHECKPOINT_NAME, load_checkpoint_file
from whypop.store import RunStore, Track

REPO = Path(__file__).resolve().parents[1]
GENRES = ("Alpha", "Beta", "Gamma")
SIZE = 64  # pixels
METRIC_KEYS = {"accuracy", "per_genre", "confusion", "best_epoch", "history", "notes", "train_seconds", "images_per_second"}


def make_run(root: Path, train: int = 4, held_out: int = 2, genres=GENRES, skip=()) -> RunStore:
    """Noise spectrograms with a bright band whose height tells the genre."""
    store = RunStore(root, create=True)
    rng = np.random.default_rng(0)
    tracks = [
        Track(f"{g.lower()}-{split}-{i}", g, split, f"{g}/{i}.wav")
        for g in genres
        for split, n in (("training", train), ("validation", held_out), ("test", held_out))
        if (g, split) not in skip
        for i in range(n)
    ]
    store.upsert_tracks(tracks)
    for t in tracks:
        image = rng.integers(0, 120, (SIZE, SIZE), dtype=np.uint8)
        row = 8 + 20 * genres.index(t.genre)
        image[row : row + 6] += 120
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        rel = f"spectrograms/{t.track_id}.png"
        store.write_bytes_atomic(rel, buf.getvalue())
        store.record_track_result(t.track_id, ok=True, spectrogram=rel)
    return store


def tiny_cfg(**train) -> Config:
    base = {"arch": "resnet18", "pretrained": "none", "trainable": "all", "lr": 1e-3, "epochs": 1, "num_workers": 0}
    return Config().replace(train={**base, **train})


@pytest.fixture
def store(tmp_path):
    s = make_run(tmp_path / "run")
    yield s
    s.close()


def test_a_tiny_run_trains_and_writes_a_complete_model(store):
    metrics = train_stage.run(tiny_cfg(epochs=2), store)
    assert METRIC_KEYS <= set(metrics)
    assert set(metrics["accuracy"]) == {"validation", "test"}
    assert all(0.0 <= v <= 1.0 for v in metrics["accuracy"].values())
    assert set(metrics["per_genre"]) == set(GENRES)
    assert all(set(v) == {"precision", "recall"} for v in metrics["per_genre"].values())
    assert metrics["confusion"]["labels"] == list(GENRES)
    assert np.array(metrics["confusion"]["matrix"]).sum() == 2 * len(GENRES)  # every test song once
    assert len(metrics["history"]) == 2 and metrics["best_epoch"] in (1, 2)
    assert any("from scratch" in n for n in metrics["notes"])

    model = store.current_model()
    assert model["status"] == "complete" and model["origin"] == "trained"
    assert model["metrics"]["accuracy"] == metrics["accuracy"]
    folder = Path(model["path"])
    assert json.loads((folder / "metrics.json").read_text())["best_epoch"] == metrics["best_epoch"]
    payload = load_checkpoint_file(folder / CHECKPOINT_NAME)
    assert payload["arch"] == "resnet18" and payload["genres"] == list(GENRES) and payload["image_size"] == SIZE
    assert payload["config"]["train"]["epochs"] == 2
    loaded = load_current(store, device="cpu")
    assert loaded.genres == list(GENRES)
    assert not list((store.root / "cache").glob("train-state-*")), "a finished training leaves no resume state"
    assert not list((store.root / "model").glob("*.partial"))


def _interrupt_at(monkeypatch, calls: int, exc: BaseException) -> None:
    original, count = T.Trainer.step, {"n": 0}

    def step(self, x, y):
        count["n"] += 1
        if count["n"] == calls:
            raise exc
        return original(self, x, y)

    monkeypatch.setattr(T.Trainer, "step", step)


def test_an_interrupted_training_leaves_the_previous_model_current(store, monkeypatch):
    train_stage.run(tiny_cfg(), store)
    first = store.current_model()["model_id"]
    _interrupt_at(monkeypatch, 2, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        train_stage.run(tiny_cfg(), store)
    assert store.current_model()["model_id"] == first
    last = store.models()[-1]
    assert last["status"] == "failed" and "boom" in last["metrics"]["error"]
    assert not list((store.root / "model").glob("*.partial"))


@pytest.mark.slow  # whole trainings through the command / twice over
def test_resume_continues_after_the_last_finished_epoch_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = tiny_cfg(epochs=2, lr_schedule="cosine")
    straight = make_run(tmp_path / "a")
    expected = train_stage.run(cfg, straight)
    reference = load_current(straight, device="cpu").model.state_dict()

    run = make_run(tmp_path / "b")
    batches = len(run.tracks(split="training")) // cfg.train.songs_per_batch
    _interrupt_at(monkeypatch, batches + 2, KeyboardInterrupt())  # during epoch 2
    with pytest.raises(KeyboardInterrupt):
        train_stage.run(cfg, run)
    assert run.current_model() is None
    assert "--resume" in run.models()[-1]["metrics"]["error"]
    states = list((run.root / "cache").glob("train-state-*.pt"))
    assert len(states) == 1 and torch.load(states[0], weights_only=True)["epochs_done"] == 1
    monkeypatch.undo()

    metrics = train_stage.run(cfg, run, resume=True)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert any("resumed after epoch 1" in n for n in metrics["notes"])
    timing = ("seconds", "images_per_second")
    assert [{k: v for k, v in h.items() if k not in timing} for h in metrics["history"]] == [
        {k: v for k, v in h.items() if k not in timing} for h in expected["history"]]
    assert metrics["accuracy"] == expected["accuracy"]
    resumed = load_current(run, device="cpu").model.state_dict()
    for name, value in reference.items():
        assert torch.allclose(resumed[name].float(), value.float(), atol=1e-5), name


def test_the_frozen_part_cache_gives_the_same_logits_and_losses(store):
    cfg = tiny_cfg(trainable="tail", songs_per_batch=3, lr=1e-4)  # the thesis' tail training
    data = T.load_data(store)
    plain = T.Trainer(cfg, data, torch.device("cpu"))
    cached = T.Trainer(cfg, data, torch.device("cpu"), cache_root=store.root / "cache")
    assert not plain.use_cache and cached.use_cache
    assert cached.prepare_cache() > 0
    (folder,) = (store.root / "cache").glob("frozen-*")
    assert cached.cache.rows("training").dtype == np.float16
    assert cached.cache.rows("training").shape[0] == len(data.splits["training"]) * 4

    # logits of the validation originals: full model vs the tail on cached outputs
    plain.model.eval()
    cached.model.eval()
    x, _ = T.collate_originals([T.Originals(data.splits["validation"], SIZE)[i] for i in range(len(data.splits["validation"]))])
    with torch.no_grad():
        direct = plain.model(x)
        via_cache = cached.parts.rest(torch.from_numpy(np.asarray(cached.cache.rows("validation"), dtype=np.float32)))
    assert torch.allclose(direct, via_cache, rtol=1e-2, atol=1e-2)

    frozen_bn = dict(cached.model.named_buffers())["bn1.running_mean"].clone()
    tail_bn = dict(cached.model.named_buffers())["layer4.1.bn2.running_mean"].clone()
    losses = {}
    for name, trainer in (("plain", plain), ("cached", cached)):
        losses[name] = [trainer.step(x, y)[0] for x, y in trainer.train_batches(1)]
    assert losses["plain"][0] == pytest.approx(losses["cached"][0], rel=1e-3)  # same weights: rounding only
    np.testing.assert_allclose(losses["plain"], losses["cached"], rtol=5e-3)  # after a few optimiser steps
    assert torch.equal(dict(cached.model.named_buffers())["bn1.running_mean"], frozen_bn), "frozen BatchNorm must not update"
    assert not torch.equal(dict(cached.model.named_buffers())["layer4.1.bn2.running_mean"], tail_bn)
    assert cached.evaluate("validation").accuracy == pytest.approx(plain.evaluate("validation").accuracy)

    again = T.Trainer(cfg, data, torch.device("cpu"), cache_root=store.root / "cache")
    assert again.prepare_cache() == 0.0 and again.cache.directory == folder  # reused, same key
    other = T.Trainer(cfg.replace(augment={"max_band": 0.08}), data, torch.device("cpu"), cache_root=store.root / "cache")
    assert T.cache_key(other.parts, data, other.cfg.augment, "resnet18") != T.cache_key(cached.parts, data, cfg.augment, "resnet18")
    random_bands = T.Trainer(cfg.replace(train={"random_augment": True}), data, torch.device("cpu"), cache_root=store.root / "cache")
    assert not random_bands.use_cache


def test_trainable_settings_freeze_the_right_parameters():
    model = torchvision.models.resnet18(num_classes=3)
    parts = T.split_model(model, "resnet18", "tail")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if n.startswith(("layer4.1.", "fc."))}
    assert {"layer4.1.conv1.weight", "layer4.1.conv2.weight", "layer4.1.bn1.weight", "fc.weight"} <= names
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(parts.rest(parts.frozen(x)), model(x), atol=1e-5)
    T.split_model(model, "resnet18", "layer4")
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"layer4", "fc"}
    T.split_model(model, "resnet18", "all")
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="ResNet"):
        T.split_model(torchvision.models.squeezenet1_1(num_classes=3), "squeezenet1_1", "tail")


def test_batches_are_songs_times_their_four_views_shuffled(store):
    cfg = tiny_cfg(songs_per_batch=2)
    data = T.load_data(store)
    trainer = T.Trainer(cfg, data, torch.device("cpu"))
    batches = list(trainer.train_batches(1))
    assert len(batches) == len(data.splits["training"]) // 2
    x, y = batches[0]
    assert x.shape == (8, 3, SIZE, SIZE)
    assert all(c % 4 == 0 for c in np.bincount(y.numpy()))  # whole songs: 4 views each
    perm = T.view_order(0, 1, [3, 5])
    assert sorted(perm) == list(range(8)) and list(perm) != list(range(8))
    again = list(trainer.train_batches(1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again)), "an epoch's batches are reproducible"
    order1, order2 = T.epoch_order(12, 0, 1), T.epoch_order(12, 0, 2)
    assert sorted(order1) == list(range(12)) and not np.array_equal(order1, order2)


def _torchvision_checkpoint(path: Path, arch: str, classes: int, wrapped: bool = True) -> Path:
    """What a plain torchvision training script saves."""
    torch.manual_seed(1)
    model = torchvision.models.get_model(arch, num_classes=classes)
    torch.save({"state_dict": model.state_dict(), "arch": arch} if wrapped else model.state_dict(), path)
    return path


def test_import_of_a_plain_torchvision_checkpoint(store, tmp_path):
    metrics = train_stage.import_checkpoint(tiny_cfg(), store, _torchvision_checkpoint(tmp_path / "r18.pt", "resnet18", 3))
    model = store.current_model()
    assert model["origin"] == "imported" and model["arch"] == "resnet18"
    assert {"accuracy", "per_genre", "confusion", "notes"} <= set(metrics)
    assert load_current(store, device="cpu").genres == list(GENRES)

    bare = _torchvision_checkpoint(tmp_path / "bare.pt", "resnet18", 3, wrapped=False)
    train_stage.import_checkpoint(tiny_cfg(arch="resnet18"), store, bare)
    assert store.current_model()["model_id"] == model["model_id"] + 1


def test_a_mismatched_checkpoint_is_refused_and_the_model_kept(store, tmp_path):
    train_stage.import_checkpoint(tiny_cfg(), store, _torchvision_checkpoint(tmp_path / "ok.pt", "resnet18", 3))
    current = store.current_model()["model_id"]
    with pytest.raises(InputError, match=r"5 outputs .* 3 genres"):
        train_stage.import_checkpoint(tiny_cfg(), store, _torchvision_checkpoint(tmp_path / "five.pt", "resnet18", 5))
    bare = _torchvision_checkpoint(tmp_path / "bare.pt", "resnet18", 3, wrapped=False)
    with pytest.raises(InputError, match=r"does not fit architecture 'resnet34'.*looks like resnet18"):
        train_stage.import_checkpoint(Config(), store, bare)  # default arch resnet34
    with pytest.raises(InputError, match="holds no state dict"):
        torch.save({"state_dict": {"a": 1}}, tmp_path / "junk.pt")
        train_stage.import_checkpoint(tiny_cfg(), store, tmp_path / "junk.pt")
    assert store.current_model()["model_id"] == current


def test_bad_input_is_refused_clearly(tmp_path):
    empty_test = make_run(tmp_path / "a", skip={(g, "test") for g in GENRES})
    with pytest.raises(InputError, match="test split .* is empty"):
        train_stage.run(tiny_cfg(), empty_test)
    no_beta = make_run(tmp_path / "b", skip={("Beta", "training")})
    with pytest.raises(InputError, match="no training tracks: Beta"):
        train_stage.run(tiny_cfg(), no_beta)
    one = make_run(tmp_path / "c", genres=("Solo",))
    with pytest.raises(InputError, match="at least 2 genres"):
        train_stage.run(tiny_cfg(), one)
    fine = make_run(tmp_path / "d")
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        train_stage.run(tiny_cfg(arch="resnet9000"), fine)
    with pytest.raises(ConfigError, match="needs a ResNet"):
        train_stage.run(tiny_cfg(arch="squeezenet1_1", trainable="tail"), fine)
    with pytest.raises(ConfigError, match="cannot take 64x64"):
        train_stage.run(tiny_cfg(arch="vit_b_16"), fine)
    with pytest.raises(InputError, match="epochs must be at least 1"):
        train_stage.run(tiny_cfg(), fine, epochs=0)
    assert fine.models() == [], "refused before a model row is created"


@pytest.mark.slow  # whole trainings through the command / twice over
def test_the_cli_trains_a_tiny_run_and_status_shows_it(store, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WHYPOP_CONFIG"}
    sets = ["train.arch=\"resnet18\"", "train.pretrained=\"none\"", "train.trainable=\"all\"", "train.lr=1e-3"]
    cmd = [sys.executable, "-m", "whypop.cli", "train", "--run", str(store.root), "--epochs", "1", "--device", "cpu"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and "from scratch" in proc.stdout
    assert "epoch=1/1" in proc.stderr  # the bar's postfix
    status = subprocess.run([sys.executable, "-m", "whypop.cli", "status", "--run", str(store.root)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert "accuracy validation" in status.stdout

    bad = _torchvision_checkpoint(tmp_path / "five.pt", "resnet18", 5)
    proc = subprocess.run([sys.executable, "-m", "whypop.cli", "train", "--run", str(store.root), "--import", str(bad)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "3 genres" in proc.stderr and "Traceback" not in proc.stderr
