"""What several stages share: the run's current model, loaded for use."""

from __future__ import annotations

from pathlib import Path

from whypop.errors import StoreError
from whypop.model import CHECKPOINT_NAME, LoadedModel, load_checkpoint_file, model_from_state, resolve_device
from whypop.store import RunStore


def load_current(store: RunStore, device: str = "auto") -> LoadedModel:
    """The run's newest complete model, in eval mode on the chosen device."""
    info = store.current_model()
    if info is None:
        raise StoreError(f"run {store.root} has no model yet (run `whypop train --run {store.root}`)")
    payload = load_checkpoint_file(Path(info["path"]) / CHECKPOINT_NAME)
    dev = resolve_device(device)
    model = model_from_state(payload["arch"], payload["state_dict"], len(payload["genres"]))
    model = model.to(dev).eval()
    return LoadedModel(model, payload["arch"], list(payload["genres"]), int(payload["image_size"]), info["model_id"],
                       dev, info["metrics"])
