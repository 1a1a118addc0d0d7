"""safetensors, the Hugging Face format, written and read the way the gateway and the TypeScript SDK do
(packages/sdk/src/wire/safetensors.ts): an 8-byte little-endian header length N, N bytes of JSON
`{"__metadata__"?: {k: v}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}` (compact, keys in
data order, padded with spaces so that 8 + N is a multiple of 8), then the tensors' raw little-endian
bytes, offsets relative to the end of the header."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple

#: Element types the gateway stores, with their byte sizes (packages/sdk/src/wire/dtypes.ts).
DTYPE_SIZES: Dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}

MEDIA_TYPE = "application/vnd.safetensors"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: Tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = DTYPE_SIZES[self.dtype]
        for d in self.shape:
            n *= d
        return n


def check_spec(spec: TensorSpec) -> None:
    if not isinstance(spec.name, str) or spec.name == "" or spec.name == "__metadata__":
        raise ValueError(f"tensor name {spec.name!r} is not allowed")
    if spec.dtype not in DTYPE_SIZES:
        raise ValueError(f"tensor {spec.name!r}: dtype {spec.dtype!r} is not one of {sorted(DTYPE_SIZES)}")
    for d in spec.shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise ValueError(f"tensor {spec.name!r}: shape {list(spec.shape)} must hold non-negative integers")


def encode_header(specs: Sequence[TensorSpec], metadata: Optional[Mapping[str, str]] = None) -> bytes:
    """The header bytes (length prefix included) for tensors laid out in the given order."""
    header: Dict[str, Any] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"metadata must map strings to strings, got {k!r}: {v!r}")
        header["__metadata__"] = dict(metadata)
    offset = 0
    seen = set()
    for spec in specs:
        check_spec(spec)
        if spec.name in seen:
            raise ValueError(f"tensor name {spec.name!r} appears twice")
        seen.add(spec.name)
        end = offset + spec.nbytes
        header[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text


@dataclass(frozen=True)
class StoredTensor:
    """A tensor of a safetensors file: where its bytes lie (absolute offset into the file)."""

    spec: TensorSpec
    offset: int


@dataclass(frozen=True)
class Layout:
    tensors: List[StoredTensor]
    metadata: Optional[Dict[str, str]]
    data_start: int
    data_length: int


#: The largest header read_layout accepts (the gateway's default TRAJGATE_MAX_HEADER_KB).
MAX_HEADER_BYTES = 16 * 1024 * 1024


def read_layout(f: BinaryIO, name: str = "safetensors file") -> Layout:
    """The header of a safetensors file, tensors in data order. Checks what the gateway checks: known dtypes,
    offsets that match the shapes and tile the data section from 0 with no gap or overlap."""
    prefix = f.read(8)
    if len(prefix) != 8:
        raise ValueError(f"{name}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", prefix)
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"{name}: header of {n} bytes is larger than {MAX_HEADER_BYTES}")
    raw = f.read(n)
    if len(raw) != n:
        raise ValueError(f"{name}: header cut short")
    try:
        header = json.loads(raw.decode("utf-8"))
    except ValueError as err:
        raise ValueError(f"{name}: header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{name}: header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise ValueError(f"{name}: __metadata__ must map strings to strings")
    entries = []
    for tname, entry in header.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{name}: tensor {tname!r} is not an object")
        spec = TensorSpec(tname, entry.get("dtype"), tuple(entry.get("shape") or ()))
        if not isinstance(entry.get("shape"), list):
            raise ValueError(f"{name}: tensor {tname!r} has no shape list")
        check_spec(spec)
        offsets = entry.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"{name}: tensor {tname!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if end - begin != spec.nbytes or begin < 0:
            raise ValueError(f"{name}: tensor {tname!r} spans {end - begin} bytes, its shape needs {spec.nbytes}")
        entries.append((begin, end, spec))
    entries.sort(key=lambda e: (e[0], e[1]))
    cursor = 0
    for begin, end, spec in entries:
        if begin != cursor:
            raise ValueError(f"{name}: tensor {spec.name!r} begins at {begin}, not at {cursor} (gap or overlap)")
        cursor = end
    data_start = 8 + n
    return Layout(
        [StoredTensor(spec, data_start + begin) for begin, _, spec in entries],
        metadata,
        data_start,
        cursor,
    )


def load(path: str) -> Dict[str, Any]:
    """A safetensors file's tensors by name: numpy arrays (BF16 and the FP8 types as their raw unsigned
    integer bit patterns, uint16 / uint8), or `(dtype, shape, bytes)` tuples where numpy is not installed."""
    with open(path, "rb") as f:
        layout = read_layout(f, path)
        out: Dict[str, Any] = {}
        for t in layout.tensors:
            f.seek(t.offset)
            data = f.read(t.spec.nbytes)
            if len(data) != t.spec.nbytes:
                raise ValueError(f"{path}: tensor {t.spec.name!r} cut short")
            out[t.spec.name] = _as_array(t.spec, data)
    return out


_NUMPY_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "F8_E5M2": "u1",
    "F8_E4M3": "u1",
    "F8_E8M0": "u1",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}


def _as_array(spec: TensorSpec, data: bytes) -> Any:
    try:
        import numpy as np
    except ImportError:
        return (spec.dtype, spec.shape, data)
    return np.frombuffer(data, dtype=_NUMPY_DTYPES[spec.dtype]).reshape(spec.shape)
