"""Configuration: the TOML files, the dataclass defaults, overrides and validation."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from whypop.config import (
    REPO_CONFIG_DIR,
    Config,
    config_from_dict,
    load_config,
    parse_overrides,
    split_overrides,
)
from whypop.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    monkeypatch.delenv("WHYPOP_CONFIG", raising=False)


def test_default_toml_equals_the_dataclass_defaults():
    assert load_config("default") == Config()


def test_default_toml_sets_every_key_of_every_section():
    data = tomllib.loads((REPO_CONFIG_DIR / "default.toml").read_text())
    defaults = Config().to_dict()
    assert set(data) == set(defaults), "default.toml sections differ from Config's"
    for section, values in defaults.items():
        assert set(data[section]) == set(values), f"[{section}] keys differ from the dataclass"


@pytest.mark.parametrize("preset", ["demo", "fma_small"])
def test_presets_load_and_validate(preset):
    cfg = load_config(preset)
    assert isinstance(cfg, Config)
    assert cfg == load_config(REPO_CONFIG_DIR / f"{preset}.toml")


def test_demo_preset_is_small():
    cfg = load_config("demo")
    assert cfg.audio.image_size < Config().audio.image_size
    assert cfg.train.pretrained == "none"


def test_unknown_section_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[trian]\nepochs = 3\n")
    with pytest.raises(ConfigError, match=r"unknown section \[trian\]"):
        load_config(bad)


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepoch = 3\n")
    with pytest.raises(ConfigError, match=r"\[train\].*unknown key 'epoch'"):
        load_config(bad)


@pytest.mark.parametrize(
    "text, names",
    [
        ('[train]\nepochs = "three"\n', ("train", "epochs")),
        ("[audio]\nsample_rate = 44100.5\n", ("audio", "sample_rate")),
        ('[dataset]\naudio_features = "maybe"\n', ("dataset", "audio_features")),
        ('[extract]\nsegments = ["a", "b"]\n', ("extract", "segments")),
        ("[train.lr]\nx = 1\n", ("train", "lr")),
    ],
)
def test_wrong_type_is_named(tmp_path, text, names):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    for name in names:
        assert name in str(err.value)


def test_invalid_toml_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_missing_file_is_a_config_error():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_preset")


def test_set_style_overrides_parse():
    out = parse_overrides(
        ["train.epochs=3", "dataset.audio_features=false", "extract.segments=[5, 10]",
         "train.device=cpu", "serve.prefix=/whypop/", "train.lr=1e-3"]
    )
    assert out == {
        "train": {"epochs": 3, "device": "cpu", "lr": 1e-3},
        "dataset": {"audio_features": False},
        "extract": {"segments": [5, 10]},
        "serve": {"prefix": "/whypop/"},
    }
    cfg = load_config(overrides=out)
    assert cfg.train.epochs == 3 and cfg.train.lr == 1e-3
    assert cfg.dataset.audio_features is False
    assert cfg.extract.segments == (5, 10)
    assert cfg.serve.prefix == "/whypop/"


@pytest.mark.parametrize("item", ["epochs=3", "train.epochs", "=3"])
def test_malformed_override_is_refused(item):
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides([item])


def test_override_of_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        load_config(overrides=parse_overrides(["train.epoch=3"]))


def test_environment_overrides_keep_commas_inside_values(monkeypatch):
    assert split_overrides("extract.segments=[5,10],train.epochs=2") == ["extract.segments=[5,10]", "train.epochs=2"]
    monkeypatch.setenv("WHYPOP_CONFIG", "extract.segments=[5,10],train.epochs=2")
    cfg = load_config()
    assert cfg.extract.segments == (5, 10) and cfg.train.epochs == 2


def test_precedence_defaults_file_env_overrides(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text("[train]\nepochs = 7\nlr = 0.01\n[augment]\nseed = 5\n")
    monkeypatch.setenv("WHYPOP_CONFIG", "train.epochs=8")
    cfg = load_config(f, overrides={"train.lr": 0.02})
    assert (cfg.train.epochs, cfg.train.lr, cfg.augment.seed) == (8, 0.02, 5)


@pytest.mark.parametrize(
    "override, name",
    [
        ("audio.sample_rate=1000", "audio.sample_rate"),
        ("audio.n_fft=0", "audio.n_fft"),
        ("audio.n_fft=8", "audio.n_fft"),
        ("audio.hop_length=2048", "audio.hop_length"),
        ("audio.n_mels=600", "audio.n_mels"),
        ("audio.duration=-1.0", "audio.duration"),
        ("augment.max_band=0.2", "max_band"),
        ("augment.min_band=0.0", "min_band"),
        ("dataset.subset=tiny", "dataset.subset"),
        ("dataset.split=[0.5, 0.5, 0.5]", "dataset.split"),
        ("dataset.max_tracks=-1", "dataset.max_tracks"),
        ("demo.genres=9", "demo.genres"),
        ("demo.artefact_genre=4", "demo.artefact_genre"),
        ("demo.artefact_share=1.5", "demo.artefact_share"),
        ("train.lr=0.0", "train.lr"),
        ("train.device=tpu", "train.device"),
        ("extract.n_clusters=1", "extract.n_clusters"),
        ("extract.significance=1.0", "extract.significance"),
    ],
)
def test_out_of_range_values_are_rejected(override, name):
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        load_config(overrides=parse_overrides([override]))


def test_round_trip_through_the_stored_form():
    cfg = load_config("demo", overrides={"train.epochs": 2, "extract.segments": [4, 8]})
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_dict(dataclasses.asdict(cfg)) == cfg


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().train.epochs = 3  # type: ignore[misc]


def test_resolve_config_precedence_preset_stored_file_env_set(tmp_path, monkeypatch):
    """defaults/preset < stored run config < --config FILE < WHYPOP_CONFIG < --set < command flags."""
    from whypop.config import resolve_config

    monkeypatch.delenv("WHYPOP_CONFIG", raising=False)
    assert resolve_config(preset="demo") == load_config("demo", env=False)
    stored = load_config("demo", overrides={"train.epochs": 3, "train.lr": 0.5}, env=False).to_dict()
    assert resolve_config(preset="default", stored=stored).train.epochs == 3  # a stored run ignores the preset
    f = tmp_path / "c.toml"
    f.write_text("[train]\nepochs = 4\nseed = 9\n")
    cfg = resolve_config(stored=stored, file=f)
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.seed) == (4, 0.5, 9)
    monkeypatch.setenv("WHYPOP_CONFIG", "train.epochs=5,train.seed=8")
    cfg = resolve_config(stored=stored, file=f, overrides=["train.epochs=6"])
    assert (cfg.train.epochs, cfg.train.seed, cfg.train.lr) == (6, 8, 0.5)
    cfg = resolve_config(stored=stored, overrides=["extract.layer=a"], sections={"extract": {"layer": "b"}})
    assert cfg.extract.layer == "b" and cfg.train.epochs == 5


def test_allowed_values_are_declared_once():
    """The enums feed validation, the command line and the ACE functions alike."""
    from whypop.ace import cav, patches, stats
    from whypop.cli import build_parser
    from whypop.config import CavMode, Correction, PatchMode, choices

    assert cav.MODES == choices(CavMode) and "logistic" in cav.MODES
    assert patches.MODES == choices(PatchMode) and stats.CORRECTIONS == choices(Correction)
    assert load_config(overrides={"extract.cav_mode": "logistic"}, env=False).extract.cav_mode == "logistic"
    args = build_parser().parse_args(["extract", "--run", "r", "--cav-mode", "logistic"])
    assert args.cav_mode == "logistic"
    with pytest.raises(ConfigError, match="allowed are fast, exact, logistic"):
        load_config(overrides={"extract.cav_mode": "magic"}, env=False)
