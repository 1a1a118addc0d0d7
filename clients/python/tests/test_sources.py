"""Every kind of checkpoint source goes to a real gateway and comes back byte-exact."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import unittest
import urllib.request

import numpy as np

import trajgate
from trajgate.safetensors import encode_header, read_layout, TensorSpec

from .gateway import gateway_url


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def all_dtype_tensors(seed: int) -> dict:
    """One finite tensor of every dtype the gateway stores; BF16 and FP8 as raw bit patterns."""
    rng = np.random.default_rng(seed)
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    return {
        "f64": rng.standard_normal((2, 3)),
        "f32": f32,
        "f16": rng.standard_normal((4,)).astype(np.float16),
        # bfloat16: the high half of float32's bits.
        "bf16": trajgate.RawTensor("BF16", (3, 5), (f32.view(np.uint32) >> 16).astype("<u2").tobytes()),
        # 0x00-0x77 are finite in all three FP8 formats (no NaN/Inf below 0x78 in E5M2, 0x7F in E4M3, 0xFF in E8M0).
        "f8_e5m2": trajgate.RawTensor("F8_E5M2", (6,), bytes(range(0x10, 0x16))),
        "f8_e4m3": trajgate.RawTensor("F8_E4M3", (6,), bytes(range(0x30, 0x36))),
        "f8_e8m0": trajgate.RawTensor("F8_E8M0", (2, 3), bytes(range(0x70, 0x76))),
        "i64": rng.integers(-(2**62), 2**62, (3,), dtype=np.int64),
        "i32": rng.integers(-1000, 1000, (2, 2), dtype=np.int32),
        "i16": rng.integers(-1000, 1000, (5,), dtype=np.int16),
        "i8": rng.integers(-128, 127, (7,), dtype=np.int8),
        "u64": rng.integers(0, 2**63, (2,), dtype=np.uint64),
        "u32": rng.integers(0, 2**31, (3,), dtype=np.uint32),
        "u16": rng.integers(0, 60000, (3,), dtype=np.uint16),
        "u8": rng.integers(0, 255, (9,), dtype=np.uint8),
        "bool": rng.integers(0, 2, (2, 2)).astype(bool),
        "scalar": np.float32(3.5) * np.ones((), np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }


def expected_bytes(value) -> bytes:
    if isinstance(value, trajgate.RawTensor):
        return bytes(value.data)
    return np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()


class JaxLike:
    """An array from another framework, seen only through the __array__ protocol (as JAX arrays are)."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)


class SourcesRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.client = trajgate.Client(gateway_url())
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def path(self, name: str) -> str:
        return os.path.join(self.tmp.name, name)

    def round_trip(self, run: str, step: int, state, **kwargs) -> tuple:
        record = self.client.upload_checkpoint(run, step, state, **kwargs)
        target = self.path(f"{run}-{step}.safetensors")
        again = self.client.download_checkpoint(run, step, target)
        self.assertEqual(again["sha256"], record["sha256"])
        self.assertEqual(sha256_file(target), record["sha256"])
        self.assertFalse(os.path.exists(target + ".partial"))
        return record, target

    def test_tensor_map_of_every_dtype(self) -> None:
        tensors = all_dtype_tensors(1)
        for hash_first in (trajgate.client.DEFAULT_HASH_FIRST_BYTES, 0):  # SHA-256 sent, or checked after
            with self.subTest(hash_first_bytes=hash_first):
                step = 10 if hash_first else 20
                record, target = self.round_trip("py-map", step, tensors, hash_first_bytes=hash_first)
                self.assertEqual(record["format"], "safetensors")
                loaded = trajgate.load(target)
                self.assertEqual(list(loaded), list(tensors))
                with open(target, "rb") as f:
                    layout = read_layout(f)
                for t in layout.tensors:
                    value = tensors[t.spec.name]
                    self.assertEqual(loaded[t.spec.name].tobytes(), expected_bytes(value), t.spec.name)
                    shape = value.shape
                    self.assertEqual(t.spec.shape, tuple(shape), t.spec.name)
                table = {t["name"]: t for t in record["tensors"]}
                self.assertEqual(table["bf16"]["dtype"], "BF16")
                self.assertEqual(table["f8_e4m3"]["dtype"], "F8_E4M3")
                self.assertEqual(table["bool"]["dtype"], "BOOL")

    def test_big_endian_non_contiguous_and_array_protocol(self) -> None:
        base = np.arange(24, dtype=np.float32).reshape(4, 6)
        tensors = {
            "big_endian": base.astype(">f4"),
            "transposed": base.T,  # not C-contiguous
            "strided": base[::2, ::3],
            "jax_like": JaxLike(base * 2),
        }
        _, target = self.round_trip("py-layouts", 1, tensors)
        loaded = trajgate.load(target)
        np.testing.assert_array_equal(loaded["big_endian"], base)
        self.assertEqual(loaded["big_endian"].dtype, np.dtype("<f4"))
        np.testing.assert_array_equal(loaded["transposed"], base.T)
        np.testing.assert_array_equal(loaded["strided"], base[::2, ::3])
        np.testing.assert_array_equal(loaded["jax_like"], base * 2)

    def test_safetensors_file_sent_as_is(self) -> None:
        tensors = all_dtype_tensors(2)
        _, written = self.round_trip("py-file-src", 1, tensors)  # a file the client wrote
        for name in ("model.safetensors", "model.bin"):  # named by its extension; sniffed by the gateway
            with self.subTest(name=name):
                path = self.path(name)
                with open(written, "rb") as src, open(path, "wb") as dst:
                    dst.write(src.read())
                step = 1 if name.endswith("safetensors") else 2
                record, target = self.round_trip("py-file", step, path)
                self.assertEqual(record["sha256"], sha256_file(path))
                with open(target, "rb") as a, open(path, "rb") as b:
                    self.assertEqual(a.read(), b.read())

    def test_directory_of_shards(self) -> None:
        rng = np.random.default_rng(3)
        shard_dir = self.path("shards")
        os.makedirs(shard_dir)
        shards = [
            {"layer.0.w": rng.standard_normal((8, 4)).astype(np.float32), "layer.0.b": np.zeros(4, np.float32)},
            {"layer.1.w": rng.standard_normal((4, 2)).astype(np.float16)},
            {"head": rng.standard_normal((2,)), "steps": np.array([7], np.int64)},
        ]
        # Written by the client itself (a step uploaded, then downloaded) so each shard is a real safetensors file.
        for i, shard in enumerate(shards):
            _, target = self.round_trip(f"py-shard-src-{i}", 1, shard)
            os.replace(target, os.path.join(shard_dir, f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"))
        with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
            f.write("{}")  # not a shard: ignored
        _, target = self.round_trip("py-shards", 1, shard_dir)
        loaded = trajgate.load(target)
        merged = {k: v for shard in shards for k, v in shard.items()}
        self.assertEqual(list(loaded), list(merged))  # shards in file-name order, each in its data order
        for name, value in merged.items():
            self.assertEqual(loaded[name].tobytes(), value.tobytes(), name)
            self.assertEqual(loaded[name].shape, value.shape, name)
        # The data section is the shards' data sections, back to back.
        data = b""
        for name in sorted(os.listdir(shard_dir)):
            if name.endswith(".safetensors"):
                with open(os.path.join(shard_dir, name), "rb") as f:
                    layout = read_layout(f)
                    f.seek(layout.data_start)
                    data += f.read()
        with open(target, "rb") as f:
            layout = read_layout(f)
            f.seek(layout.data_start)
            self.assertEqual(f.read(), data)

    def test_shards_with_one_name_twice_are_refused(self) -> None:
        shard_dir = self.path("dupes")
        os.makedirs(shard_dir)
        for i in range(2):
            spec = TensorSpec("w", "U8", (2,))
            with open(os.path.join(shard_dir, f"s{i}.safetensors"), "wb") as f:
                f.write(encode_header([spec]) + b"\x01\x02")
        with self.assertRaisesRegex(ValueError, "'w' is in both s0.safetensors and s1.safetensors"):
            self.client.upload_checkpoint("py-dupes", 1, shard_dir)

    def test_download_resumes_a_partial_file(self) -> None:
        tensors = {"w": np.arange(100_000, dtype=np.float32)}
        record = self.client.upload_checkpoint("py-resume", 5, tensors)
        full = self.path("full.safetensors")
        self.client.download_checkpoint("py-resume", 5, full)
        with open(full, "rb") as f:
            content = f.read()
        target = self.path("resumed.safetensors")
        with open(target + ".partial", "wb") as f:
            f.write(content[: len(content) // 3])  # what a cut-short download left behind
        self.client.download_checkpoint("py-resume", 5, target)
        self.assertEqual(sha256_file(target), record["sha256"])
        # A partial file that is not a prefix of the checkpoint is found out by the hash and downloaded again.
        with open(target + ".partial", "wb") as f:
            f.write(b"\xff" * (len(content) // 2))
        self.client.download_checkpoint("py-resume", 5, target)
        self.assertEqual(sha256_file(target), record["sha256"])


if __name__ == "__main__":
    unittest.main()


class ShardedDownloadTest(unittest.TestCase):
    """A step stored as several files (sent one by one, as the TypeScript SDK's uploadCheckpointDir does)
    comes back as a directory: every file byte-exact, and the index naming them."""

    def test_sharded_step_downloads_to_a_directory(self) -> None:
        url = gateway_url()
        client = trajgate.Client(url)
        files = {}
        for i, name in enumerate(["a", "b"], start=1):
            values = np.arange(16, dtype=np.float32) * i
            files[f"model-0000{i}-of-00002.safetensors"] = (
                encode_header([TensorSpec(name, "F32", (16,))]) + values.astype("<f4").tobytes()
            )
        for file, body in files.items():
            req = urllib.request.Request(
                f"{url}/v1/runs/py-sharded/checkpoints/3/shards/{file}",
                data=body,
                method="PUT",
                headers={"content-type": "application/vnd.safetensors", "x-trajgate-shard-count": "2"},
            )
            with urllib.request.urlopen(req) as res:
                self.assertIn(res.status, (201, 202))  # staged, then the step committed
        with tempfile.TemporaryDirectory() as tmp:
            target = os.path.join(tmp, "step-3")
            record = client.download_checkpoint("py-sharded", 3, target)
            self.assertEqual(sorted(s["file"] for s in record["shards"]), sorted(files))
            self.assertEqual(sorted(os.listdir(target)), sorted([*files, "model.safetensors.index.json"]))
            for file, body in files.items():
                self.assertEqual(sha256_file(os.path.join(target, file)), hashlib.sha256(body).hexdigest())
            with open(os.path.join(target, "model.safetensors.index.json"), encoding="utf-8") as f:
                index = json.load(f)
            self.assertEqual(
                index["weight_map"], {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
            )
