"""Settings layers and how they combine: defaults, then matrix entries, then a [[job]], then the command line.

One merge rule for every layer, so that a key means the same wherever a suite sets it.
"""

from __future__ import annotations

from typing import Any


def strip_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An axis entry's own settings, without its name (the job key it sets) and bookkeeping."""
    return {k: x for k, x in entry.items() if k not in ("name", "_from_installed")}


def merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; ``options`` tables merge key by key; ``when`` conditions add up."""
    out: dict[str, Any] = {"options": {}, "when": []}
    for layer in layers:
        for key, value in layer.items():
            if key == "options":
                out["options"].update(value)
            elif key == "when":
                out["when"] += [value] if isinstance(value, str) else list(value)
            elif key == "tag":
                out["tag"] = f"{out['tag']}_{value}" if out.get("tag") else value
            elif key == "timeout":
                out["timeout_s"] = value
            elif key in ("env", "python"):  # one place a job runs: the latest layer says
                out.pop("python" if key == "env" else "env", None)
                out[key] = value
            else:
                out[key] = value
    return out
