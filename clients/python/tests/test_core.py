"""The core is standard library only: importing trajgate loads neither numpy nor torch, and raw tensors,
metrics and downloads work in a process where numpy cannot be imported at all."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

from .gateway import gateway_url

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)

WITHOUT_NUMPY = r"""
import sys, tempfile, os
sys.modules["numpy"] = None  # any import of numpy now fails
import trajgate
c = trajgate.Client(sys.argv[1])
state = {"w": trajgate.RawTensor("F32", (2, 2), bytes(range(16))), "m": trajgate.RawTensor("U8", (3,), b"\x01\x02\x03")}
with c.run("py-no-numpy", planned_steps=10, train_size=5) as run:
    for s in range(1, 11):
        run.log(s, train_loss=1.0 / s)
    run.checkpoint(10, state)
target = os.path.join(tempfile.mkdtemp(), "c.safetensors")
c.download_checkpoint("py-no-numpy", 10, target)
loaded = trajgate.load(target)
assert loaded == {"w": ("F32", (2, 2), bytes(range(16))), "m": ("U8", (3,), b"\x01\x02\x03")}, loaded
print(len(c.get_metrics("py-no-numpy")))
"""


class Core(unittest.TestCase):
    def python(self, code: str, *args: str) -> str:
        env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
        out = subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip()

    def test_import_loads_no_numpy_or_torch(self) -> None:
        self.assertEqual(self.python("import sys, trajgate; print('numpy' in sys.modules, 'torch' in sys.modules)"), "False False")

    def test_works_without_numpy(self) -> None:
        self.assertEqual(self.python(WITHOUT_NUMPY, gateway_url()), "10")


if __name__ == "__main__":
    unittest.main()
