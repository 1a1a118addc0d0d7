"""Policies, pins and restores through the client, against a real gateway."""

from __future__ import annotations

import unittest

import numpy as np

import trajgate
from trajgate import TrajgateError

from .gateway import gateway_url


class PolicyPinRestore(unittest.TestCase):
    def test_policy_pin_unpin_restore(self) -> None:
        client = trajgate.Client(gateway_url())
        run = "py-policy"
        rng = np.random.default_rng(11)
        w = rng.standard_normal((16, 8)).astype(np.float32)
        for step in range(1, 7):
            w = w + 0.1 * rng.standard_normal(w.shape).astype(np.float32)
            client.upload_checkpoint(run, step * 10, {"w": w})

        tight = {"budget": {"maxCheckpoints": 2}, "latest": 1}
        simulated = client.simulate_retention(run, policy=tight)
        self.assertIn("checkpoints", simulated)
        answer = client.set_policy(run, policy=tight)
        self.assertEqual(answer["run"]["policy"], {"policy": tight})
        kept = client.list_checkpoints(run, "kept")
        discarded = client.list_checkpoints(run, "discarded")
        self.assertLessEqual(len(kept), 2)
        self.assertIn(60, [c["step"] for c in kept])
        self.assertTrue(discarded)

        # A discarded checkpoint comes back pinned; unpinning lets the policy decide again.
        step = discarded[0]["step"]
        restored = client.restore(run, step)
        self.assertEqual((restored["status"], restored["pinned"]), ("kept", True))
        unpinned = client.unpin(run, step)
        self.assertFalse(unpinned["pinned"])
        pinned = client.pin(run, step)
        self.assertTrue(pinned["pinned"])
        self.assertIn("pinned", pinned["classes"])

        client.put_policy("py-keep-three", {"budget": {"maxCheckpoints": 3}})
        self.assertIn("py-keep-three", [p["name"] for p in client.list_policies()])
        self.assertEqual(client.set_policy(run, name="py-keep-three")["run"]["policy"], {"name": "py-keep-three"})
        with self.assertRaises(TrajgateError) as caught:
            client.set_policy(run, name="py-no-such-policy")
        self.assertEqual(caught.exception.code, "policy_not_found")
        with self.assertRaises(ValueError):
            client.set_policy(run)


if __name__ == "__main__":
    unittest.main()
