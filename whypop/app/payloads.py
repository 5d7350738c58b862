"""Build ``/_dash-update-component`` request bodies the way the Dash renderer does.

Used by the callback tests and ``benchmarks/serve.py`` to drive the server without a
browser: take a callback from ``/_dash-dependencies``, fill its inputs and states, post.
"""

from __future__ import annotations

import json
from typing import Any, Mapping


def prop_key(id_: Any, prop: str) -> str:
    """Dash's "id.prop" string (dict ids as JSON with sorted keys, no spaces)."""
    sid = json.dumps(id_, sort_keys=True, separators=(",", ":")) if isinstance(id_, dict) else str(id_)
    return f"{sid}.{prop}"


def find_callback(dependencies: list[dict], output: tuple[Any, str]) -> dict:
    """The server-side callback whose outputs include ``(id, prop)``."""
    want = prop_key(*output)
    for dep in dependencies:
        if dep.get("clientside_function"):
            continue
        outs = [o.split("@")[0] for o in _outputs(dep["output"])]
        if want in outs:
            return dep
    raise KeyError(f"no server callback outputs {want}")


def callback_payload(dep: dict, values: Mapping[str, Any], changed: list[str] | None = None) -> dict:
    """A request body for ``dep`` with ``values`` keyed by "id.prop" (missing ones are None)."""
    def fill(items):
        out = []
        for item in items:
            id_ = _parse_id(item["id"])
            out.append({"id": id_, "property": item["property"], "value": values.get(prop_key(id_, item["property"]))})
        return out

    outputs = []
    for o in _outputs(dep["output"]):
        sid, prop = o.rsplit(".", 1)
        outputs.append({"id": _parse_id(sid), "property": prop.split("@")[0]})
    inputs = fill(dep["inputs"])
    changed = changed if changed is not None else [prop_key(i["id"], i["property"]) for i in inputs[:1]]
    body = {
        "output": dep["output"],
        "outputs": outputs if len(outputs) > 1 or dep["output"].startswith("..") else outputs[0],
        "inputs": inputs,
        "changedPropIds": changed,
    }
    if dep.get("state"):
        body["state"] = fill(dep["state"])
    return body


def _outputs(output: str) -> list[str]:
    """'..a.b...c.d..' (multi-output) or 'a.b' -> ['a.b', 'c.d']."""
    if output.startswith("..") and output.endswith(".."):
        return output[2:-2].split("...")
    return [output]


def _parse_id(sid: str) -> Any:
    return json.loads(sid) if sid.startswith("{") else sid
