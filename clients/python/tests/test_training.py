"""A numpy MLP trained for 300 steps through the client (examples/train_numpy_mlp.py): metrics and
checkpoints arrive, the trajectory and the estimate come back. And TrainingStats' definitions, checked
against direct computation."""

from __future__ import annotations

import importlib.util
import os
import unittest

import numpy as np

import trajgate

from .gateway import gateway_url

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "train_numpy_mlp.py")


def load_example():
    spec = importlib.util.spec_from_file_location("train_numpy_mlp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NumpyTraining(unittest.TestCase):
    def test_a_numpy_mlp_logs_checkpoints_and_gets_an_estimate(self) -> None:
        example = load_example()
        client = trajgate.Client(gateway_url())
        result = example.train(client, "py-numpy-mlp", steps=300)
        per_call = example.log_overhead(client, "py-numpy-mlp-log", calls=20_000)
        print("\n" + example.report(result, per_call))

        points = client.get_metrics("py-numpy-mlp")
        self.assertEqual([p["step"] for p in points], list(range(1, 301)))
        for field in ("trainLoss", "lr", "gradNorm", "gradVariance", "updateNorm", "batchSize"):
            self.assertTrue(all(p.get(field) is not None for p in points), field)
        self.assertEqual(sum(1 for p in points if p.get("gapIncrement") is not None), 30)
        self.assertEqual(sum(1 for p in points if p.get("valLoss") is not None), 15)
        self.assertLess(result["final_train_loss"], points[0]["trainLoss"])  # it learned

        checkpoints = result["checkpoints"]
        self.assertEqual([c["step"] for c in checkpoints], list(range(20, 301, 20)))
        kept = [c for c in checkpoints if c["status"] == "kept"]
        self.assertIn(300, [c["step"] for c in kept])
        self.assertTrue(all(c["classes"] and c["reasons"] for c in kept))
        self.assertEqual(len(result["trajectory"]["items"]), 15)

        estimate = result["estimate"]
        self.assertEqual(estimate["step"], 300)
        self.assertEqual(estimate["trainSize"], 2000)
        self.assertEqual(estimate["missing"], [])
        self.assertIsNotNone(estimate["indicator"])
        self.assertIsNotNone(estimate["measuredGap"])
        self.assertLess(per_call, 1e-3)  # log() hands off; a millisecond per call would mean it blocks

        # The last kept checkpoint is the trained model, byte for byte.
        target = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"py-numpy-mlp-{os.getpid()}.safetensors")
        try:
            client.download_checkpoint("py-numpy-mlp", 300, target)
            self.assertEqual(sorted(trajgate.load(target)), ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"])
        finally:
            if os.path.exists(target):
                os.remove(target)


class TrainingStatsDefinitions(unittest.TestCase):
    def test_gradient_stats_follow_the_definitions(self) -> None:
        rng = np.random.default_rng(5)
        micro = [{"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)} for _ in range(4)]
        g = trajgate.TrainingStats(micro_batches=4).gradient_stats(micro, rows_per_micro_batch=8)
        flat = [np.concatenate([m["a"].ravel(), m["b"]]) for m in micro]
        mean = np.mean(flat, axis=0)
        self.assertAlmostEqual(g.grad_norm, float(np.linalg.norm(mean)), places=12)
        expected = 8 / 3 * sum(float(np.sum((f - mean) ** 2)) for f in flat)
        self.assertAlmostEqual(g.grad_variance, expected, places=10)
        np.testing.assert_allclose(g.grads["b"], mean[6:])

    def test_preconditioned_variance_follows_the_definition(self) -> None:
        rng = np.random.default_rng(7)
        micro = [{"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)} for _ in range(4)]
        stats = trajgate.TrainingStats(micro_batches=4)
        g = stats.gradient_stats(micro, rows_per_micro_batch=8)
        precond = {"a": np.exp(rng.uniform(-3, 3, (3, 2))), "b": np.exp(rng.uniform(-3, 3, 4))}
        flat = [np.concatenate([m["a"].ravel(), m["b"]]) for m in micro]
        mean = np.mean(flat, axis=0)
        weights = np.concatenate([precond["a"].ravel(), precond["b"]])
        expected = 8 / 3 * sum(float(np.sum(weights * (f - mean) ** 2)) for f in flat)
        got = stats.preconditioned_variance(micro, g.grads, 8, precond)
        self.assertAlmostEqual(got, expected, places=10)
        # P = lr·1 (SGD) gives lr·gradVariance.
        sgd = {"a": np.full((3, 2), 0.1), "b": np.full(4, 0.1)}
        self.assertAlmostEqual(stats.preconditioned_variance(micro, g.grads, 8, sgd), 0.1 * g.grad_variance, places=10)

    def test_grad_variance_is_unbiased_for_the_per_sample_covariance(self) -> None:
        # Per-sample gradients with covariance diag(s²): tr Σ = Σ s². Averaged over many draws, tr Σ̂ ≈ tr Σ.
        rng = np.random.default_rng(6)
        s = np.array([0.5, 1.0, 2.0, 3.0])
        stats = trajgate.TrainingStats(micro_batches=4)
        b = 16
        draws = []
        for _ in range(4000):
            samples = rng.standard_normal((4 * b, 4)) * s + 1.0
            micro = [{"w": samples[k * b : (k + 1) * b].mean(axis=0)} for k in range(4)]
            draws.append(stats.gradient_stats(micro, b).grad_variance)
        self.assertAlmostEqual(float(np.mean(draws)) / float(np.sum(s**2)), 1.0, delta=0.03)

    def test_update_norm_and_gap_increment(self) -> None:
        before = {"w": np.array([1.0, 2.0]), "b": np.array([0.5])}
        after = {"w": np.array([1.5, 2.0]), "b": np.array([0.0])}
        self.assertAlmostEqual(trajgate.TrainingStats.update_norm(before, after), np.sqrt(0.5), places=12)
        delta = {k: after[k] - before[k] for k in before}
        val = {"w": np.array([1.0, 1.0]), "b": np.array([2.0])}
        train = {"w": np.array([0.0, 3.0]), "b": np.array([1.0])}
        # <val − train, Δw> = (1·0.5 + (−2)·0) + 1·(−0.5) = 0
        self.assertAlmostEqual(trajgate.TrainingStats.gap_increment(val, train, delta), 0.0, places=12)
        train["b"] = np.array([3.0])
        self.assertAlmostEqual(trajgate.TrainingStats.gap_increment(val, train, delta), 1.0, places=12)
        with self.assertRaises(ValueError):
            trajgate.TrainingStats(micro_batches=1)


if __name__ == "__main__":
    unittest.main()
