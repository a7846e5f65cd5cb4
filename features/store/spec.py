"""``StoreSpec``: what a store holds (one store per extractor spec)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vlpet.provenance import canonical_json

from .errors import StoreError


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"StoreSpec.params must be JSON-like (dict/list/str/int/float/bool/None), got {type(obj).__name__}")


@dataclass(frozen=True)
class StoreSpec:
    """The extractor spec a store is bound to.

    ``shape``: the per-sample shape, e.g. ``(49, 2048)``; ragged stores (videos) leave the first dimension
    ``None`` (``(None, 512)``: ``T_i`` frames of 512). ``dtype``: a numpy dtype name (stored little-endian).
    ``params``: preprocessing/model parameters (JSON-like), part of the identity of the features.
    """

    extractor: str
    shape: tuple
    dtype: str = "float16"
    ragged: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.extractor or not isinstance(self.extractor, str):
            raise StoreError("StoreSpec.extractor must be a non-empty string")
        shape = tuple(None if d is None else int(d) for d in self.shape)
        if not shape:
            raise StoreError("StoreSpec.shape must have at least one dimension")
        if self.ragged:
            if shape[0] is not None or any(d is None for d in shape[1:]):
                raise StoreError(f"a ragged StoreSpec has shape (None, ...) with fixed trailing dims, got {shape}")
            if any(d <= 0 for d in shape[1:]):
                raise StoreError(f"StoreSpec.shape dims must be > 0, got {shape}")
        elif any(d is None or d <= 0 for d in shape):
            raise StoreError(f"a fixed-shape StoreSpec needs positive int dims (ragged=True for (None, ...)), "
                             f"got {shape}")
        dt = np.dtype(self.dtype)
        if dt.kind not in "fiub" or dt.itemsize > 8:
            raise StoreError(f"StoreSpec.dtype must be a numeric dtype, got {self.dtype!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dt.name)
        object.__setattr__(self, "ragged", bool(self.ragged))
        object.__setattr__(self, "params", _jsonable(dict(self.params)))
        canonical_json(self.params)  # rejects NaN/inf early

    # --- derived -----------------------------------------------------------------------------------------
    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype).newbyteorder("<")

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.from_numpy_dtype(np.dtype(self.dtype))

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The fixed part of a sample's shape: the whole shape, or the trailing dims of a ragged one."""
        return tuple(self.shape[1:]) if self.ragged else tuple(self.shape)

    @property
    def row_size(self) -> int:
        return int(math.prod(self.row_shape))

    def to_dict(self) -> dict[str, Any]:
        return {"extractor": self.extractor, "shape": list(self.shape), "dtype": self.dtype,
                "ragged": self.ragged, "params": self.params}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StoreSpec:
        return cls(extractor=d["extractor"], shape=tuple(d["shape"]), dtype=d["dtype"], ragged=bool(d["ragged"]),
                   params=d.get("params") or {})

    def digest(self) -> str:
        """sha256 of the canonical JSON of the spec (part of every content digest and run id)."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()

    def differences(self, other: StoreSpec) -> list[str]:
        """Human-readable differing fields (``params.<key>`` for parameters), empty when equal."""
        out = []
        for name in ("extractor", "shape", "dtype", "ragged"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name}: {a!r} != {b!r}")
        keys = sorted(set(self.params) | set(other.params))
        for k in keys:
            a, b = self.params.get(k, "<absent>"), other.params.get(k, "<absent>")
            if canonical_json(a) != canonical_json(b):
                out.append(f"params.{k}: {a!r} != {b!r}")
        return out
