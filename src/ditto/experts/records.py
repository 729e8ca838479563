"""Pickles read without running their code: every SB3 / gym class they name becomes an inert record.

    value = RecordUnpickler(io.BytesIO(raw)).load()
    record_global(value)  # "gymnasium.spaces.box.Box", or None for a real object

numpy arrays and plain containers load for real; classes and functions of SB3, sb3-contrib,
the Zoo, gym and gymnasium (and torch's activations and optimizers) load as records that keep
their attributes and run nothing; every other global is refused. SB3 checkpoints' pickled
(`:serialized:`) data entries and VecNormalize statistics are read this way.
"""

from __future__ import annotations

import _compat_pickle
import pickle
from typing import Any

__all__ = ["RecordUnpickler", "describe", "record_global"]


class _Record:
    """Stands in for any SB3 / gym class in a pickle: keeps its attributes, runs no code."""

    _ditto_global = "?"  # module.name of the class it stands for

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        parts = state if isinstance(state, tuple) else (state,)  # (dict, slots) or anything
        for part in parts:
            if isinstance(part, dict):
                self.__dict__.update(part)

    def __repr__(self) -> str:
        return f"<{self._ditto_global}>"


# Modules whose classes and functions a pickle may name: they load as records, never imported.
_RECORD_MODULES = (
    "stable_baselines3",
    "sb3_contrib",
    "rl_zoo3",
    "gym",
    "gymnasium",
    "numpy.random",  # RNG state
    "torch.nn.modules.activation",  # policy_kwargs' activation_fn
    "torch.optim",  # policy_kwargs' optimizer_class (not rebuilt: predicting needs no optimizer)
)
_SAFE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # bytes in protocols 0-2
    *(
        ("builtins", t)
        for t in ("object", "set", "frozenset", "slice", "complex", "bytes", "bytearray")
    ),
    *(("builtins", t) for t in ("str", "int", "float", "bool", "list", "tuple", "dict")),
}


class RecordUnpickler(pickle.Unpickler):
    """Loads numpy arrays and plain containers for real, SB3/gym objects as _Records; refuses
    every other global, so no function named in the pickle is ever called."""

    _records: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        # Python 2 names (protocols 0-2), mapped as pickle.Unpickler(fix_imports=True) does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module.startswith(("numpy.core.", "numpy._core.")):  # numpy 1.x / 2.x spellings
            rest = module.split(".", 2)[2]
            if ("numpy._core." + rest, name) in _SAFE_GLOBALS:
                for spelling in ("numpy._core.", "numpy.core."):
                    try:
                        return super().find_class(spelling + rest, name)
                    except (ImportError, AttributeError):
                        continue
        elif (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if any(module == m or module.startswith(m + ".") for m in _RECORD_MODULES):
            key = (module, name)
            if key not in self._records:
                self._records[key] = type(name, (_Record,), {"_ditto_global": f"{module}.{name}"})
            return self._records[key]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def record_global(value: Any) -> str | None:
    """'module.name' of the class a record (or record class) stands for; None for real objects."""
    cls = value if isinstance(value, type) else type(value)
    return cls._ditto_global if issubclass(cls, _Record) else None


def describe(value: Any) -> str:
    """`value` for an error message: the class a record stands for, else its type's name."""
    return record_global(value) or type(value).__name__
