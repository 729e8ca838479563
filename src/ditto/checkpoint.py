"""One-file checkpoints: tensors in safetensors, everything else as JSON in its header. Never pickle.

    save_checkpoint(path, {"model": model, "optim": optimizer}, tensors={...}, meta={...})
    ckpt = load_checkpoint(path)
    ckpt.restore("model", model); ckpt.restore("optim", optimizer)

Written atomically: a crash or Ctrl-C during a save leaves the previous file.
Each file records the sha256 of its contents (header and tensors) in its header, and
loading refuses one that no longer matches it: a damaged or edited checkpoint never
trains or acts. `record_in` also keeps the file's sha256 in a run's config.json (see
`ditto run verify`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors

import ditto
from ditto.errors import DittoError
from ditto.io import atomic_write_bytes, atomic_write_recorded


class CheckpointError(DittoError):
    """A checkpoint that is missing, unreadable, or for another model."""


def _flatten(prefix: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move tensors out of a nested state dict into `tensors`; return the JSON-able rest."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {
            "__dict__": [
                [_json_key(k), _flatten(f"{prefix}/{k}", v, tensors)] for k, v in value.items()
            ]
        }
    if isinstance(value, (list, tuple)):
        return [_flatten(f"{prefix}/{i}", v, tensors) for i, v in enumerate(value)]
    return value


def _json_key(key: Any) -> Any:
    if not isinstance(key, (str, int)):
        raise TypeError(f"cannot store state-dict key {key!r}")
    return key


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict) and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if isinstance(value, dict) and "__dict__" in value:
        return {k: _unflatten(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def _digest(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of a checkpoint's header (without its digest) and tensors, in a fixed order."""
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    stateful: dict[str, Any],
    *,
    tensors: dict[str, torch.Tensor] | None = None,
    meta: dict[str, Any] | None = None,
    record_in: Path | None = None,
) -> None:
    """Save the state dicts of `stateful` (modules, optimizers), extra tensors and JSON metadata;
    with `record_in` (a run's config.json), keep the file's sha256 there too."""
    flat: dict[str, torch.Tensor] = {}
    structure = {
        name: _flatten(f"state/{name}", obj.state_dict(), flat) for name, obj in stateful.items()
    }
    for name, tensor in (tensors or {}).items():
        flat[f"tensor/{name}"] = tensor.detach().cpu().contiguous()
    header = {"ditto_version": ditto.__version__, "structure": structure, "meta": meta or {}}
    # Over the header as loading will read it back (JSON turns tuples into lists, keys into str).
    header["sha256"] = _digest(json.loads(json.dumps(header)), flat)
    data = save_safetensors(flat, metadata={"ditto": json.dumps(header)})
    if record_in is None:
        atomic_write_bytes(Path(path), data)
    else:
        atomic_write_recorded(Path(path), data, record_in)


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]
    _structure: dict[str, Any]
    _tensors: dict[str, torch.Tensor]

    def state_dict(self, name: str) -> dict[str, Any]:
        if name not in self._structure:
            raise CheckpointError(
                f"{self.path}: holds no {name!r} state (it holds {sorted(self._structure)})"
            )
        return _unflatten(self._structure[name], self._tensors)

    def restore(self, name: str, obj: Any) -> None:
        try:
            obj.load_state_dict(self.state_dict(name))
        except (RuntimeError, ValueError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise CheckpointError(
                f"{self.path}: its {name!r} does not fit this model ({first_line})"
            ) from None

    def tensor(self, name: str) -> torch.Tensor:
        return self._tensors[f"tensor/{name}"]

    def has_tensor(self, name: str) -> bool:
        return f"tensor/{name}" in self._tensors


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads(f.metadata()["ditto"])
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - not a dict
        if not isinstance(header, dict) or "structure" not in header:
            raise KeyError("structure")
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable ditto checkpoint ({exc})") from None
    recorded = header.pop("sha256", None)  # None: saved before checkpoints recorded one
    if recorded is not None and recorded != _digest(header, tensors):
        raise CheckpointError(
            f"{path}: its contents do not match the sha256 recorded when it was saved (the file "
            "is damaged or was changed); restore it from a copy or train again"
        )
    return Checkpoint(path, header.get("meta", {}), header["structure"], tensors)
