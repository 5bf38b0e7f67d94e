"""The one place where results become JSON.

Every command's result is a dataclass; ``payload`` turns it into plain JSON values with the header
every document starts with (``schema_version``, ``gradscope_version``, ``command``), and ``dumps``
writes it. Rules (REFERENCE §6):

- numpy arrays become lists, numpy scalars Python numbers, complex numbers [re, im] pairs;
- a non-finite float (NaN, +-Infinity, which are not JSON) becomes null, and the document counts
  them in ``nonfinite_count``; ``json.dumps(allow_nan=False)`` guarantees no such token escapes;
- fields marked ``metadata={"json": False}`` (big arrays kept for --save-grads) are left out.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from ._version import __version__

# Bumped only on breaking changes to any command's document (removed or retyped fields).
SCHEMA_VERSION = 1

HIDDEN = {"json": False}


class _Encoder:
    def __init__(self) -> None:
        self.nonfinite = 0

    def number(self, x: float) -> float | None:
        if math.isfinite(x):
            return x
        self.nonfinite += 1
        return None

    def convert(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, (int, np.integer)):
            return int(obj)
        if isinstance(obj, (float, np.floating)):
            return self.number(float(obj))
        if isinstance(obj, (complex, np.complexfloating)):
            return [self.number(float(obj.real)), self.number(float(obj.imag))]
        if isinstance(obj, np.ndarray):
            return [self.convert(v) for v in obj.tolist()]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {
                f.name: self.convert(getattr(obj, f.name))
                for f in dataclasses.fields(obj)
                if f.metadata.get("json", True)
            }
        if isinstance(obj, dict):
            return {str(k): self.convert(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.convert(v) for v in obj]
        raise TypeError(f"cannot serialise {type(obj).__name__}")


def payload(result: Any) -> dict:
    """The JSON document of a command's result: header, fields, and the non-finite count; for a
    recorder's Record (``as_json``), its NDJSON line's object (schemas/record.json)."""
    if not hasattr(result, "command") and hasattr(result, "as_json"):
        return _Encoder().convert(result.as_json())
    enc = _Encoder()
    body = enc.convert(result)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "gradscope_version": __version__,
        "command": result.command,
    }
    doc.update(body)
    doc["nonfinite_count"] = enc.nonfinite
    return doc


def dumps(result: Any) -> str:
    """The result as a JSON text, strict (no NaN/Infinity tokens), keys in a fixed order."""
    return json.dumps(payload(result), allow_nan=False, indent=2)


def dumps_line(record: Any) -> str:
    """One compact JSON line (for NDJSON streams); non-finite values become null."""
    return json.dumps(_Encoder().convert(record), allow_nan=False, separators=(",", ":"))
