"""What `Run.checkpoint()` and `Client.upload_checkpoint()` accept, made ready to send:

- a file path, sent as it is (`.safetensors` and `.tgckpt` name their format; anything else goes as
  application/octet-stream and the gateway recognises it);
- a directory of safetensors shards (`model-00001-of-00002.safetensors`, ...), sent as one safetensors
  checkpoint: one header listing every shard's tensors (shards in file-name order, each one's tensors in
  its data order), then each shard's data section copied from disk;
- a mapping name -> array/tensor, written as safetensors while it streams.

Nothing is assembled in memory: the header is built from shapes, and tensor bytes are sent from the
arrays (or files) in slices."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .safetensors import MEDIA_TYPE, TensorSpec, encode_header, read_layout
from .tensors import Entry, to_entry

NATIVE_MEDIA_TYPE = "application/vnd.trajgate.checkpoint+msgpack"
OCTET_STREAM = "application/octet-stream"
SLICE = 1 << 20

#: Sources up to this many bytes are hashed before sending, and the SHA-256 goes in x-trajgate-sha256.
DEFAULT_HASH_FIRST_BYTES = 256 * 1024 * 1024


@dataclass
class Prepared:
    content_type: str
    size: int
    #: Known before sending (goes in the x-trajgate-sha256 header), else None.
    sha256: Optional[str]
    #: Yields the bytes; may be called again for a retry.
    open: Callable[[], Iterator[Any]]


def prepare(source: Any, hash_first_bytes: int = DEFAULT_HASH_FIRST_BYTES, copy: bool = True) -> Prepared:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            return _with_hash(_prepare_shards(path), hash_first_bytes)
        return _with_hash(_prepare_file(path), hash_first_bytes)
    if isinstance(source, Mapping):
        return _with_hash(_prepare_tensors(source, copy), hash_first_bytes)
    raise TypeError(
        f"a checkpoint is a file path, a directory of .safetensors shards, or a mapping name -> tensor; "
        f"got {type(source).__name__}"
    )


def _with_hash(prepared: Prepared, hash_first_bytes: int) -> Prepared:
    if prepared.size <= hash_first_bytes:
        h = hashlib.sha256()
        for piece in prepared.open():
            h.update(piece)
        prepared.sha256 = h.hexdigest()
    return prepared


def _prepare_file(path: str) -> Prepared:
    size = os.stat(path).st_size
    ext = os.path.splitext(path)[1]
    content_type = {".safetensors": MEDIA_TYPE, ".tgckpt": NATIVE_MEDIA_TYPE}.get(ext, OCTET_STREAM)

    def open_() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while True:
                piece = f.read(SLICE)
                if not piece:
                    return
                yield piece

    return Prepared(content_type, size, None, open_)


def _prepare_tensors(tensors: Mapping[str, Any], copy: bool) -> Prepared:
    entries: List[Entry] = []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        entries.append(to_entry(name, value, copy))
    header = encode_header([e.spec for e in entries])
    size = len(header) + sum(e.spec.nbytes for e in entries)

    def open_() -> Iterator[Any]:
        yield header
        for e in entries:
            for i in range(0, e.data.nbytes, SLICE):
                yield e.data[i : i + SLICE]

    return Prepared(MEDIA_TYPE, size, None, open_)


def _prepare_shards(directory: str) -> Prepared:
    files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
    if not files:
        raise ValueError(f"{directory}: no .safetensors shards in this directory")
    specs: List[TensorSpec] = []
    ranges: List[Tuple[str, int, int]] = []  # (file, first byte of its data section, length)
    metadata: Dict[str, str] = {}
    seen: Dict[str, str] = {}
    for name in files:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            layout = read_layout(f, path)
        if os.stat(path).st_size != layout.data_start + layout.data_length:
            raise ValueError(f"{path}: {os.stat(path).st_size} bytes, its header describes {layout.data_start + layout.data_length}")
        for t in layout.tensors:
            if t.spec.name in seen:
                raise ValueError(f"tensor {t.spec.name!r} is in both {seen[t.spec.name]} and {name}")
            seen[t.spec.name] = name
            specs.append(t.spec)
        for k, v in (layout.metadata or {}).items():
            if metadata.get(k, v) != v:
                raise ValueError(f"shards disagree on metadata {k!r}: {metadata[k]!r} and {v!r} ({name})")
            metadata[k] = v
        ranges.append((path, layout.data_start, layout.data_length))
    header = encode_header(specs, metadata or None)
    size = len(header) + sum(length for _, _, length in ranges)

    def open_() -> Iterator[bytes]:
        yield header
        for path, start, length in ranges:
            with open(path, "rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    piece = f.read(min(SLICE, left))
                    if not piece:
                        raise ValueError(f"{path} was cut short while it was being sent")
                    left -= len(piece)
                    yield piece

    return Prepared(MEDIA_TYPE, size, None, open_)
