"""Typed configuration: one frozen dataclass per stage, loaded from TOML.

The dataclass defaults are the thesis settings (``config/default.toml`` mirrors them and a
test keeps the two equal). A run's resolved configuration is saved in its store, so a
run is reproducible from what it holds. Precedence, lowest first: the defaults (or a
preset for a new run), the run's stored configuration, ``--config FILE``,
``WHYPOP_CONFIG``, ``--set`` overrides; :func:`resolve_config` is the one function
applying it, for the command line, the dashboard's jobs and the dashboard alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterable, Mapping, get_type_hints

from whypop.errors import ConfigError
from whypop.resources import data_dir

REPO_CONFIG_DIR = data_dir("config")  # the presets: the checkout's config/, or the installed copy


# -- allowed values, declared once (argparse choices, the dashboard's form and validation) --


def _choices(name: str, *values: str) -> type[StrEnum]:
    """A string enum whose members are ``values`` (member names: the values upper-cased)."""
    return StrEnum(name, {v.upper(): v for v in values})


Device = _choices("Device", "auto", "cpu", "cuda")
Subset = _choices("Subset", "small", "medium", "large", "full")  # FMA subsets
Pretrained = _choices("Pretrained", "imagenet", "none")
Trainable = _choices("Trainable", "tail", "layer4", "all")
Optimizer = _choices("Optimizer", "adam", "sgd")
LrSchedule = _choices("LrSchedule", "constant", "cosine")
ImageSplit = _choices("ImageSplit", "heldout", "training", "all")  # which tracks: validation+test, training, all
RandomKind = _choices("RandomKind", "images", "patches")  # random sets of whole spectrograms or of one patch each
PatchMode = _choices("PatchMode", "faithful", "inplace")  # crop + resize (the reference), masked full frame
CavMode = _choices("CavMode", "fast", "exact", "logistic")  # batched SGD objective, sklearn per pair, batched logistic
TcavGradient = _choices("TcavGradient", "logit", "loss")
Correction = _choices("Correction", "holm", "bonferroni", "none")
Layout = _choices("Layout", "fma", "folders")  # collection layouts `whypop prepare` reads


# which setting takes which values: section -> key -> enum
CHOICES: dict[str, dict[str, type[StrEnum]]] = {
    "dataset": {"subset": Subset},
    "train": {"lr_schedule": LrSchedule, "pretrained": Pretrained, "trainable": Trainable, "device": Device,
              "optimizer": Optimizer},
    "extract": {"image_split": ImageSplit, "random_split": ImageSplit, "random_kind": RandomKind, "device": Device,
                "patch_mode": PatchMode, "cav_mode": CavMode, "tcav_gradient": TcavGradient, "correction": Correction},
}


def choices(kind: type[StrEnum]) -> tuple[str, ...]:
    """The allowed values of an enum as plain strings, in declaration order."""
    return tuple(m.value for m in kind)


def _check_choices(settings: Any, section: str) -> None:
    for name, kind in CHOICES[section].items():
        check_choice(section, name, getattr(settings, name), kind)


def check_choice(section: str, name: str, value: Any, kind: type[StrEnum]) -> None:
    """ConfigError naming the setting and the allowed values unless ``value`` is one of them."""
    if value not in choices(kind):
        raise ConfigError(f"{section}.{name}={value!r}: allowed are {', '.join(choices(kind))}")


@dataclass(frozen=True)
class AudioConfig:
    """Audio to image: decode, mono, resample, fix length, mel, dB, resize."""

    sample_rate: int = 44100  # Hz
    duration: float = 30.0  # seconds kept (padded with silence or trimmed)
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    image_size: int = 224  # pixels, square
    top_db: float = 80.0  # dB range mapped to 0..255 (below peak - top_db is black)
    fmax: float | str = "nyquist"  # top of the mel range: "nyquist" (sample_rate / 2), "auto" (the sources'), or Hz
    pad: str = "silence"  # clips shorter than `duration`: "silence" (thesis) or "repeat" (loop the clip)

    def validate(self) -> None:
        _positive(self, "sample_rate", "duration", "n_fft", "hop_length", "n_mels", "image_size", "top_db")
        if isinstance(self.fmax, str):
            if self.fmax not in ("nyquist", "auto"):
                raise ConfigError(f"audio.fmax={self.fmax!r}: allowed are \"nyquist\", \"auto\" or a frequency in Hz")
        elif not 1000 <= self.fmax <= self.sample_rate / 2:
            raise ConfigError(f"audio.fmax={self.fmax:g} Hz: must be between 1000 Hz and the Nyquist frequency "
                              f"sample_rate / 2 = {self.sample_rate / 2:g} Hz")
        if self.pad not in ("silence", "repeat"):
            raise ConfigError(f"audio.pad={self.pad!r}: allowed are \"silence\" (thesis) and \"repeat\"")
        if self.sample_rate < 4000:
            raise ConfigError(f"audio.sample_rate={self.sample_rate} is too low (at least 4000 Hz)")
        if self.n_fft < 16:
            raise ConfigError(f"audio.n_fft={self.n_fft} is too small (at least 16 samples)")
        if self.hop_length > self.n_fft:
            raise ConfigError(f"audio.hop_length={self.hop_length} must be at most audio.n_fft={self.n_fft}")
        if self.n_mels > self.n_fft // 2 + 1:
            raise ConfigError(f"audio.n_mels={self.n_mels}: at most n_fft // 2 + 1 = {self.n_fft // 2 + 1} bands")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation: original + frequency band + time band + both."""

    max_band: float = 0.10  # largest band, as a share of the image side
    min_band: float = 0.03
    seed: int = 0

    def validate(self) -> None:
        if not 0 < self.min_band <= self.max_band <= 0.10:
            raise ConfigError(
                f"augment bands must satisfy 0 < min_band <= max_band <= 0.10 "
                f"(got min_band={self.min_band}, max_band={self.max_band})"
            )


@dataclass(frozen=True)
class DatasetConfig:
    """Which tracks to use and how to split collections that bring no split."""

    subset: str = "small"  # FMA subset: small, medium, large, full
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # training, validation, test
    seed: int = 0
    max_tracks: int = 0  # 0 = all; otherwise the first N per genre (for quick trials)
    audio_features: bool = True  # compute the audio descriptors during preparation

    def validate(self) -> None:
        _check_choices(self, "dataset")
        if len(self.split) != 3 or any(s < 0 for s in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(f"dataset.split={list(self.split)} must be three non-negative shares summing to 1")
        if self.max_tracks < 0:
            raise ConfigError(f"dataset.max_tracks={self.max_tracks}: 0 (all) or a positive count")


@dataclass(frozen=True)
class DemoConfig:
    """The synthetic demo collection with planted concepts."""

    genres: int = 4
    clips_per_genre: int = 40
    clip_seconds: float = 4.0
    sample_rate: int = 22050
    seed: int = 0
    artefact_genre: int = 3  # index of the genre that gets silent bands; -1 for none
    artefact_share: float = 0.7
    artefact_signature_db: float = -12.0  # the signature's level in clips with the artefact (dB)
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)

    def validate(self) -> None:
        if not 1 <= self.genres <= 8:
            raise ConfigError(f"demo.genres={self.genres}: allowed 1..8")
        if self.clips_per_genre < 5:
            raise ConfigError(f"demo.clips_per_genre={self.clips_per_genre}: at least 5")
        if self.clip_seconds < 1:
            raise ConfigError(f"demo.clip_seconds={self.clip_seconds}: at least 1 s")
        if not -1 <= self.artefact_genre < self.genres:
            raise ConfigError(f"demo.artefact_genre={self.artefact_genre}: -1 (none) or 0..{self.genres - 1}")
        if not 0 <= self.artefact_share <= 1:
            raise ConfigError(f"demo.artefact_share={self.artefact_share}: must be in [0, 1]")
        if not -30 <= self.artefact_signature_db <= 0:
            raise ConfigError(f"demo.artefact_signature_db={self.artefact_signature_db}: must be in [-30, 0] dB")


@dataclass(frozen=True)
class TrainConfig:
    """Classifier training (thesis: ResNet34, layer4 tail + fc, lr 1e-4, 4 songs x 4 augmentations)."""

    arch: str = "resnet34"
    pretrained: str = "imagenet"  # "imagenet" or "none"
    weights_file: str = ""  # a local ImageNet state dict; empty = torch's hub cache (downloaded there once)
    trainable: str = "tail"  # "tail" (layer4's last block convs + fc), "layer4", "all"
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    songs_per_batch: int = 4  # each song contributes its 4 augmented images
    epochs: int = 50
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda
    cache: bool = True  # cache frozen-part outputs when only the tail trains
    random_augment: bool = False  # new random bands every epoch (disables the cache)
    num_workers: int = 2
    label_smoothing: float = 0.0
    lr_schedule: str = "constant"  # "constant" (thesis) or "cosine" (decay to 0 over the epochs, per batch)

    def validate(self) -> None:
        _check_choices(self, "train")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"train.label_smoothing={self.label_smoothing}: must be in [0, 1)")
        if self.num_workers < 0:
            raise ConfigError(f"train.num_workers={self.num_workers}: must be >= 0 (0 = load in the training process)")
        _positive(self, "lr", "songs_per_batch", "epochs")


@dataclass(frozen=True)
class ExtractConfig:
    """ACE concept discovery with TCAV scores (thesis settings)."""

    layer: str = "layer4.2.conv2"
    discovery_images: int = 50  # per genre, segmented into patches
    score_images: int = 50  # per genre, for TCAV scores; disjoint from the discovery images
    image_split: str = "heldout"  # discovery + score images from: heldout (validation + test), training, all
    random_split: str = "training"  # random sets drawn from these tracks of every genre (minus discovery/score)
    random_kind: str = "images"  # random sets of whole spectrograms (reference) or of one random patch of each
    segments: tuple[int, ...] = (10, 15, 25)
    compactness: float = 20.0  # on intensities scaled to 0..100, as SLIC on Lab
    sigma: float = 1.0
    n_clusters: int = 25
    min_cluster_size: int = 40  # ACE's min_imgs: a concept needs more members than this
    max_concept_patches: int = 40  # ACE's max_imgs: members kept per concept
    random_experiments: int = 20
    random_set_size: int = 50
    patch_mode: str = "faithful"  # faithful (crop + resize) or inplace (masked full frame)
    cav_mode: str = "fast"  # fast (sklearn's SGD, all pairs at once), exact (sklearn per pair), logistic
    tcav_gradient: str = "logit"  # logit (paper) or loss (reference code)
    significance: float = 0.01  # family-wise level
    correction: str = "holm"  # holm, bonferroni, none
    min_score_songs: int = -1  # fewer score songs: nothing significant; -1 = from the level (8 at 0.01), 0 = off
    black_level: int = 16  # pixel values at or below this count as black (silence, bands)
    black_share: float = 0.5  # a concept whose patch pixels are this black is flagged
    skip_empty: bool = True  # segment only where the image can hold music (not above Nyquist, not padding)
    render_patches: int = 10  # patch images rendered per concept (what the network saw)
    cache: bool = True  # cache activations and gradients under <run>/cache/activations
    batch_size: int = 32
    device: str = "auto"
    seed: int = 0
    evaluate: bool = True  # deletion and insertion tests on held-out songs after every extraction
    evaluate_songs: int = 0  # held-out songs per genre for those tests (0 = all)
    evaluate_draws: int = 3  # seeded draws of the random baselines (same-area regions, concepts)

    def validate(self) -> None:
        _check_choices(self, "extract")
        if self.evaluate_songs < 0:
            raise ConfigError(f"extract.evaluate_songs={self.evaluate_songs}: must be >= 0 (0 = all held-out songs)")
        if not 1 <= self.evaluate_draws <= 100:
            raise ConfigError(f"extract.evaluate_draws={self.evaluate_draws}: allowed 1..100")
        if not 0 <= self.black_level <= 255:
            raise ConfigError(f"extract.black_level={self.black_level}: allowed 0..255")
        if not 0 < self.black_share <= 1:
            raise ConfigError(f"extract.black_share={self.black_share}: must be in (0, 1]")
        if self.min_cluster_size < 1:
            raise ConfigError(f"extract.min_cluster_size={self.min_cluster_size}: at least 1 (a concept needs "
                              f"more members than this, and a CAV at least 2)")
        if self.render_patches < 0:
            raise ConfigError(f"extract.render_patches={self.render_patches}: must be >= 0")
        if not self.segments or any(s < 2 or s > 500 for s in self.segments):
            raise ConfigError(f"extract.segments={list(self.segments)}: each must be 2..500")
        if not 2 <= self.n_clusters <= 200:
            raise ConfigError(f"extract.n_clusters={self.n_clusters}: allowed 2..200")
        if not 2 <= self.random_experiments <= 500:
            raise ConfigError(f"extract.random_experiments={self.random_experiments}: allowed 2..500")
        if not 2 <= self.discovery_images <= 10000:
            raise ConfigError(f"extract.discovery_images={self.discovery_images}: allowed 2..10000")
        if not 0 < self.significance < 1:
            raise ConfigError(f"extract.significance={self.significance}: must be in (0, 1)")
        if self.min_score_songs < -1:
            raise ConfigError(f"extract.min_score_songs={self.min_score_songs}: -1 (from the significance "
                              f"level), 0 (off) or a count of songs")
        if self.score_images < 1:
            raise ConfigError(f"extract.score_images={self.score_images}: at least 1")
        if self.random_set_size < 2 or self.max_concept_patches < 2:
            raise ConfigError("extract.random_set_size and extract.max_concept_patches must be at least 2")
        _positive(self, "random_set_size", "max_concept_patches", "batch_size", "compactness", "sigma")


@dataclass(frozen=True)
class SummaryConfig:
    """The seed's post-processing: clusters of concepts across genres, t-SNE map."""

    clusters: int = 10
    perplexity: float = 5.0
    similar_threshold: float = 0.5  # cosine of mean CAVs above which concepts count as similar
    lonely_size: int = 2  # a cluster with at most this many concepts, none important, is flagged
    seed: int = 0

    def validate(self) -> None:
        if not 1 <= self.clusters <= 200:
            raise ConfigError(f"summary.clusters={self.clusters}: allowed 1..200")
        if self.lonely_size < 0:
            raise ConfigError(f"summary.lonely_size={self.lonely_size}: must be >= 0")
        _positive(self, "perplexity")


@dataclass(frozen=True)
class ServeConfig:
    """The dashboard."""

    prefix: str = "/"
    read_only: bool = False
    port: int = 8050
    host: str = "127.0.0.1"
    # largest request body the app's routes accept (callbacks send a few KB); a route that
    # takes uploads raises it for itself (flask.request.max_content_length = its own limit)
    max_request_bytes: int = 1_000_000
    # who may embed the dashboard in a frame: the Content-Security-Policy frame-ancestors
    # sources, e.g. "'self' https://portal.example.org"; "*" allows every site
    frame_ancestors: str = "'self'"
    allow_upload: bool = False  # in read-only mode, still accept song uploads to explain (writable mode always does)
    upload_max_mb: float = 30.0  # largest song upload, megabytes
    upload_max_seconds: float = 1200.0  # longest song upload (only its first audio.duration seconds are explained)

    def validate(self) -> None:
        if self.max_request_bytes < 10_000:
            raise ConfigError(f"serve.max_request_bytes={self.max_request_bytes}: at least 10000 (callbacks need a few KB)")
        if not self.frame_ancestors.strip() or any(c in self.frame_ancestors for c in ";,\r\n"):
            raise ConfigError(f"serve.frame_ancestors={self.frame_ancestors!r}: space-separated sources, "
                              "e.g. \"'self' https://portal.example.org\" or \"*\"")
        if not 0 < self.upload_max_mb <= 2048:
            raise ConfigError(f"serve.upload_max_mb={self.upload_max_mb}: allowed (0, 2048]")
        if not 0 < self.upload_max_seconds <= 24 * 3600:
            raise ConfigError(f"serve.upload_max_seconds={self.upload_max_seconds}: allowed (0, 86400]")


@dataclass(frozen=True)
class Config:
    audio: AudioConfig = field(default_factory=AudioConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def validate(self) -> "Config":
        for f in fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "validate"):
                section.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **sections: Any) -> "Config":
        """A copy with some sections replaced by mappings of changed keys."""
        return merge(self, sections)


def resolve_config_path(name: str | Path) -> Path:
    """A TOML path, or a preset name from the ``config/`` folder (e.g. ``demo``)."""
    path = Path(name)
    if path.is_file():
        return path
    preset = REPO_CONFIG_DIR / (str(name) if str(name).endswith(".toml") else f"{name}.toml")
    if preset.is_file():
        return preset
    raise ConfigError(f"configuration file not found: {name} (nor a preset in {REPO_CONFIG_DIR})")


def load_config(
    *files: str | Path | None, overrides: Mapping[str, Any] | None = None, env: bool = True,
    base: Config | None = None,
) -> Config:
    """``base`` (the defaults), then each TOML file, then ``WHYPOP_CONFIG``, then ``overrides``."""
    cfg = Config() if base is None else base
    for f in files:
        if f is None:
            continue
        path = resolve_config_path(f)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        cfg = merge(cfg, data, origin=str(path))
    if env and os.environ.get("WHYPOP_CONFIG"):
        cfg = merge(cfg, parse_overrides(split_overrides(os.environ["WHYPOP_CONFIG"])), origin="WHYPOP_CONFIG")
    if overrides:
        cfg = merge(cfg, _nest(overrides), origin="command line")
    return cfg.validate()


def resolve_config(
    *,
    preset: str | Path | None = None,
    stored: Mapping[str, Any] | None = None,
    file: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    env: bool = True,
) -> Config:
    """The configuration a command, a job or the dashboard runs with: the one precedence rule.

    Lowest first: the code defaults, or the ``preset`` for a run with no stored
    configuration; the run's ``stored`` configuration; ``file`` (``--config``);
    ``WHYPOP_CONFIG`` (when ``env``); ``overrides`` (``--set`` items, or a flat/nested
    mapping); ``sections`` (a command's own flags or a job's parameters, e.g.
    ``{"extract": {"layer": ...}}``). The result is validated.
    """
    base = merge(Config(), stored, origin="stored config") if stored else None
    files = [file] if file else ([] if stored else [preset])
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    cfg = load_config(*files, overrides=overrides or None, env=env, base=base)
    if sections:
        cfg = merge(cfg, sections, origin="command line").validate()
    return cfg


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Rebuild a Config saved with ``to_dict`` (as stored in a run)."""
    return merge(Config(), data, origin="stored config").validate()


def split_overrides(text: str) -> list[str]:
    """``"a.b=1,c.d=[1,2]"`` -> ``["a.b=1", "c.d=[1,2]"]``: commas inside values are kept."""
    return re.split(r",(?=\s*[A-Za-z_]\w*\.\w+\s*=)", text)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.epochs=3", "extract.segments=[5,10]"]`` -> nested dict (values parsed as TOML)."""
    out: dict[str, Any] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        section, name = key.strip().split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, Mapping):
            out.setdefault(key, {}).update(value)
        else:
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
    return out


def merge(cfg: Config, data: Mapping[str, Any], origin: str = "config") -> Config:
    """Apply a nested mapping onto a Config, checking every key and type."""
    sections = {f.name: f for f in fields(cfg)}
    changed: dict[str, Any] = {}
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(f"{origin}: unknown section [{name}] (allowed: {', '.join(sections)})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{name}] must be a table of settings")
        current = changed.get(name, getattr(cfg, name))
        changed[name] = _merge_section(current, values, f"{origin} [{name}]")
    return dataclasses.replace(cfg, **changed)


def _merge_section(section: Any, values: Mapping[str, Any], origin: str) -> Any:
    hints = get_type_hints(type(section))
    allowed = {f.name for f in fields(section)}
    updates = {}
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(f"{origin}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        updates[key] = _coerce(value, hints[key], f"{origin} {key}")
    return dataclasses.replace(section, **updates)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    text = str(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif text == "float | str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif text.startswith("tuple"):
        if isinstance(value, (list, tuple)):
            inner = float if "float" in text else int
            try:
                return tuple(_coerce(v, inner, where) for v in value)
            except ConfigError:
                pass
    raise ConfigError(f"{where}: {value!r} is not a valid {text.replace('typing.', '')}")


def _positive(section: Any, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value <= 0:
            raise ConfigError(f"{type(section).__name__.removesuffix('Config').lower()}.{name}={value}: must be > 0")
