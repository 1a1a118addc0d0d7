"""Golden safetensors files shared with the TypeScript side: tensors.json lists the tensors (every stored
dtype, a scalar, an empty tensor, a non-ASCII name, metadata); python.safetensors is what this client
writes for them, sdk.safetensors what the TypeScript SDK's encodeSafetensors writes. This test checks the
Python side; test/python-client.test.ts checks the SDK still writes sdk.safetensors and the gateway's
decoder reads python.safetensors."""

from __future__ import annotations

import base64
import json
import os
import unittest

import trajgate
from trajgate.safetensors import TensorSpec, encode_header, read_layout

from .gateway import gateway_url

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def spec() -> dict:
    with open(os.path.join(GOLDEN, "tensors.json"), encoding="utf-8") as f:
        return json.load(f)


def golden(name: str) -> bytes:
    with open(os.path.join(GOLDEN, name), "rb") as f:
        return f.read()


class Golden(unittest.TestCase):
    def test_the_python_writer_writes_the_golden_file(self) -> None:
        s = spec()
        tensors = s["tensors"]
        header = encode_header([TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in tensors], s["metadata"])
        body = header + b"".join(base64.b64decode(t["data"]) for t in tensors)
        self.assertEqual(body, golden("python.safetensors"))

    def test_the_python_reader_reads_what_the_sdk_wrote(self) -> None:
        s = spec()
        path = os.path.join(GOLDEN, "sdk.safetensors")
        with open(path, "rb") as f:
            layout = read_layout(f, path)
        self.assertEqual(layout.metadata, s["metadata"])
        self.assertEqual([t.spec.name for t in layout.tensors], [t["name"] for t in s["tensors"]])
        loaded = trajgate.load(path)
        for t in s["tensors"]:
            self.assertEqual(loaded[t["name"]].tobytes(), base64.b64decode(t["data"]), t["name"])
            self.assertEqual(list(loaded[t["name"]].shape), t["shape"], t["name"])
            self.assertEqual(next(x.spec.dtype for x in layout.tensors if x.spec.name == t["name"]), t["dtype"])

    def test_the_gateway_decodes_what_the_python_client_wrote(self) -> None:
        client = trajgate.Client(gateway_url())
        path = os.path.join(GOLDEN, "python.safetensors")
        record = client.upload_checkpoint("py-golden", 1, path)
        self.assertEqual(record["format"], "safetensors")
        self.assertEqual(record["metadata"], spec()["metadata"])
        table = [(t["name"], t["dtype"], t["shape"]) for t in record["tensors"]]
        self.assertEqual(table, [(t["name"], t["dtype"], t["shape"]) for t in spec()["tensors"]])
        # A tensor map with the same tensors and metadata-free header decodes the same way.
        tensors = {
            t["name"]: trajgate.RawTensor(t["dtype"], tuple(t["shape"]), base64.b64decode(t["data"]))
            for t in spec()["tensors"]
        }
        again = client.upload_checkpoint("py-golden-map", 1, tensors)
        self.assertEqual([(t["name"], t["dtype"], t["shape"]) for t in again["tensors"]], table)
        self.assertEqual([t["norm"] for t in again["tensors"]], [t["norm"] for t in record["tensors"]])


if __name__ == "__main__":
    unittest.main()
