"""In-memory tensors as safetensors entries: numpy arrays (and anything with `__array__`, such as JAX
arrays), PyTorch tensors (without importing torch here: a tensor is recognised by its type's module), and
`RawTensor` for bytes given as they are. Each becomes a spec plus a flat byte view, little-endian, C order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from .safetensors import DTYPE_SIZES, TensorSpec, check_spec


@dataclass(frozen=True)
class RawTensor:
    """A tensor given as raw little-endian bytes: `RawTensor("BF16", (4, 4), data)` (no numpy needed)."""

    dtype: str
    shape: Tuple[int, ...]
    data: Any  # bytes-like, C order

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))


#: numpy dtype names (after byte order is made little-endian) to safetensors dtypes. bfloat16 and the FP8
#: types are extension dtypes (ml_dtypes, as JAX uses them) and are sent by their bit patterns.
_FROM_NUMPY = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e8m0fnu": "F8_E8M0",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}


@dataclass(frozen=True)
class Entry:
    spec: TensorSpec
    #: The bytes: a flat memoryview of format 'B', spec.nbytes long.
    data: memoryview


def to_entry(name: str, value: Any, copy: bool) -> Entry:
    """`value` as an Entry. With `copy`, the bytes are a snapshot (training may go on changing the original);
    without, they are a view of the caller's memory where possible."""
    if isinstance(value, Entry):
        if value.spec.name != name:
            raise ValueError(f"tensor {name!r} was prepared as {value.spec.name!r}")
        return value
    if isinstance(value, RawTensor):
        spec = TensorSpec(name, value.dtype, value.shape)
        check_spec(spec)
        view = memoryview(value.data).cast("B")
        if view.nbytes != spec.nbytes:
            raise ValueError(f"tensor {name!r}: {view.nbytes} bytes, shape and dtype need {spec.nbytes}")
        return Entry(spec, memoryview(bytes(view)) if copy else view)
    if _is_torch_tensor(value):
        array, dtype, copied = _from_torch(value)
        return _from_numpy(name, array, dtype, copy and not copied)
    if hasattr(value, "__array__") or hasattr(value, "__array_interface__"):
        import numpy as np

        return _from_numpy(name, np.asarray(value), None, copy)
    raise TypeError(
        f"tensor {name!r} is a {type(value).__name__}: give a numpy array, a torch tensor, an object with "
        "__array__ (a JAX array) or a trajgate.RawTensor"
    )


def _from_numpy(name: str, array: Any, dtype: Any, copy: bool) -> Entry:
    import numpy as np

    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
        copy = False  # astype made a copy
    if dtype is None:
        dtype = _FROM_NUMPY.get(array.dtype.name)
        if dtype is None:
            raise ValueError(
                f"tensor {name!r} has numpy dtype {array.dtype}, which trajgate does not store "
                f"(supported: {', '.join(sorted(DTYPE_SIZES))})"
            )
    if copy or not array.flags.c_contiguous:
        array = np.array(array, order="C", copy=True)
    spec = TensorSpec(name, dtype, tuple(int(d) for d in array.shape))
    check_spec(spec)
    flat = array.reshape(-1).view(np.uint8)
    return Entry(spec, memoryview(flat).cast("B") if flat.size else memoryview(b""))


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach") and hasattr(value, "cpu")


def _from_torch(value: Any) -> Tuple[Any, Any, bool]:
    """(numpy array, safetensors dtype or None, whether the array is already a copy) for a torch tensor:
    `tensor.detach().cpu()`, with bfloat16 and the FP8 types reinterpreted by their bit patterns."""
    import torch  # the caller already imported it: this costs nothing

    t = value.detach()
    copied = t.device.type != "cpu"
    t = t.cpu().contiguous()
    bits = {torch.bfloat16: ("BF16", torch.int16)}
    for attr, dtype in (("float8_e5m2", "F8_E5M2"), ("float8_e4m3fn", "F8_E4M3"), ("float8_e8m0fnu", "F8_E8M0")):
        if hasattr(torch, attr):
            bits[getattr(torch, attr)] = (dtype, torch.uint8)
    if t.dtype in bits:
        dtype, as_int = bits[t.dtype]
        return t.view(as_int).numpy(), dtype, copied
    return t.numpy(), None, copied
