"""Typed errors with the server's codes, and retries that are safe: only connection errors, 429 and 5xx
are retried, and a retried upload or metric batch is stored exactly once."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import unittest

import numpy as np

import trajgate
from trajgate import RetryPolicy, TrajgateConnectionError, TrajgateError

from .gateway import gateway_url
from .proxy import FlakyProxy

FAST = RetryPolicy(retries=4, base_delay=0.05, max_delay=2.0)


def weights(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((64, 32)).astype(np.float32), "b": rng.standard_normal(32).astype(np.float32)}


class Errors(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.client = trajgate.Client(gateway_url(), retry=FAST)

    def test_bad_run_id_is_invalid_run_id(self) -> None:
        for bad in ("bad id!", "-leading-dash", "a" * 129, "x..y"):
            with self.subTest(run=bad):
                with self.assertRaises(TrajgateError) as caught:
                    self.client.put_run(bad, planned_steps=10)
                self.assertEqual(caught.exception.code, "invalid_run_id")
                self.assertEqual(caught.exception.status, 400)

    def test_bad_run_id_from_the_background_queues(self) -> None:
        errors = []
        run = self.client.run("bad run id", on_error=errors.append)
        run.log(1, trainLoss=0.5)
        run.checkpoint(1, weights(1))
        with self.assertRaises(trajgate.BackgroundError) as caught:
            run.close()
        self.assertEqual(sorted(e.code for e in caught.exception.errors), ["invalid_run_id", "invalid_run_id"])
        self.assertEqual(len(errors), 2)
        with self.assertRaises(RuntimeError):
            run.log(2, trainLoss=0.4)

    def test_upload_with_a_bad_run_id_gets_the_early_answer_not_a_retry(self) -> None:
        # The gateway answers 400 before reading a 4 MiB body; the client reports that answer.
        big = {"w": np.ones((1024, 1024), np.float32)}
        started = time.monotonic()
        with self.assertRaises(TrajgateError) as caught:
            self.client.upload_checkpoint("no way!", 1, big)
        self.assertEqual(caught.exception.code, "invalid_run_id")
        self.assertLess(time.monotonic() - started, 5)

    def test_conflicting_bytes_for_a_committed_step(self) -> None:
        self.client.upload_checkpoint("py-conflict", 1, weights(1))
        self.client.upload_checkpoint("py-conflict", 1, weights(1))  # the same bytes: fine, stored once
        with self.assertRaises(TrajgateError) as caught:
            self.client.upload_checkpoint("py-conflict", 1, weights(2))
        self.assertEqual(caught.exception.code, "checkpoint_conflict")
        self.assertEqual(caught.exception.status, 409)
        self.assertEqual(len(self.client.list_checkpoints("py-conflict")), 1)

    def test_not_found_codes(self) -> None:
        with self.assertRaises(TrajgateError) as caught:
            self.client.get_checkpoint("py-never-made", 3)
        self.assertIn(caught.exception.code, trajgate.ERROR_CODES)
        self.assertEqual(caught.exception.status, 404)

    def test_metric_values_are_checked_before_they_are_queued(self) -> None:
        with self.client.run("py-nan") as run:
            with self.assertRaisesRegex(ValueError, "trainLoss"):
                run.log(1, train_loss=float("nan"))
            with self.assertRaisesRegex(ValueError, "step"):
                run.log(-1, trainLoss=1.0)
            run.log(np.int64(2), train_loss=np.float32(0.5), accuracy=0.75)
        [point] = self.client.get_metrics("py-nan")
        self.assertEqual(point, {**point, "step": 2, "trainLoss": 0.5, "extra": {"accuracy": 0.75}})

    def test_nothing_listening_is_a_connection_error_after_retries(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        client = trajgate.Client(f"http://127.0.0.1:{port}", retry=RetryPolicy(retries=2, base_delay=0.01))
        with self.assertRaises(TrajgateConnectionError) as caught:
            client.get_run("anything")
        self.assertNotIsInstance(caught.exception, TrajgateError)
        self.assertIn(str(port), str(caught.exception))

    def test_a_file_that_vanishes_is_a_local_error_not_retried(self) -> None:
        with self.assertRaises(FileNotFoundError):
            self.client.upload_checkpoint("py-missing", 1, os.path.join(tempfile.gettempdir(), "no-such.safetensors"))

    def test_token_never_shows(self) -> None:
        client = trajgate.Client(gateway_url(), token="s3cret-token-value-0123456789")
        self.assertNotIn("s3cret", repr(client))
        self.assertNotIn("s3cret", repr(client.__dict__))
        with self.assertRaises(ValueError):
            trajgate.Client(gateway_url(), token="has space")


class Retries(unittest.TestCase):
    def setUp(self) -> None:
        self.proxy = FlakyProxy(gateway_url())
        self.client = trajgate.Client(self.proxy.url, retry=FAST)
        self.direct = trajgate.Client(gateway_url())

    def tearDown(self) -> None:
        self.proxy.close()

    def actions(self, method: str, fragment: str) -> list:
        return [a for m, p, a in self.proxy.seen if m == method and fragment in p]

    def test_upload_cut_mid_body_is_retried_and_committed_once(self) -> None:
        self.proxy.add("PUT", r"/checkpoints/7$", "cut_request", times=2)
        state = weights(7)
        record = self.client.upload_checkpoint("py-cut", 7, state)
        self.assertEqual(self.actions("PUT", "/checkpoints/7"), ["cut_request", "cut_request", "pass"])
        [stored] = self.direct.list_checkpoints("py-cut")
        self.assertEqual((stored["step"], stored["sha256"]), (7, record["sha256"]))

    def test_upload_whose_answer_is_lost_commits_exactly_once(self) -> None:
        self.proxy.add("PUT", r"/checkpoints/9$", "drop_answer", times=1)
        record = self.client.upload_checkpoint("py-lost", 9, weights(9))
        self.assertEqual(self.actions("PUT", "/checkpoints/9"), ["drop_answer", "pass"])
        # The retry found the same bytes committed: the answer is the stored record, with no new decision.
        self.assertIsNone(record["decision"])
        [stored] = self.direct.list_checkpoints("py-lost")
        self.assertEqual((stored["step"], stored["sha256"]), (9, record["sha256"]))

    def test_metric_batch_whose_answer_is_lost_is_stored_once(self) -> None:
        self.proxy.add("POST", r"/metrics$", "drop_answer", times=1)
        with self.client.run("py-lost-metrics", batch_size=50) as run:
            for step in range(1, 101):
                run.log(step, trainLoss=1.0 / step)
        self.assertEqual(self.actions("POST", "/metrics"), ["drop_answer", "pass", "pass"])
        points = self.direct.get_metrics("py-lost-metrics")
        self.assertEqual([p["step"] for p in points], list(range(1, 101)))

    def test_429_waits_for_retry_after(self) -> None:
        self.proxy.add("GET", r"/v1/runs/py-429$", "429", times=1)
        self.direct.put_run("py-429", train_size=10)
        started = time.monotonic()
        run = self.client.get_run("py-429")
        self.assertEqual(run["trainSize"], 10)
        self.assertGreaterEqual(time.monotonic() - started, 0.95)  # Retry-After: 1
        self.assertEqual(self.actions("GET", "/v1/runs/py-429"), ["429", "pass"])

    def test_429_beyond_the_retries_is_rate_limited(self) -> None:
        self.proxy.add("GET", r"/v1/runs/py-429b$", "429", times=10)
        client = trajgate.Client(self.proxy.url, retry=RetryPolicy(retries=1, base_delay=0.01, max_delay=0.05))
        with self.assertRaises(TrajgateError) as caught:
            client.get_run("py-429b")
        self.assertEqual((caught.exception.code, caught.exception.status), ("rate_limited", 429))
        self.assertEqual(caught.exception.retry_after, 1.0)

    def test_4xx_is_not_retried(self) -> None:
        with self.assertRaises(TrajgateError):
            self.client.get_checkpoint("py-never-made-either", 1)
        self.assertEqual(len(self.actions("GET", "/checkpoints/1")), 1)

    def test_download_cut_short_is_resumed_with_a_range_request(self) -> None:
        state = {"w": np.arange(300_000, dtype=np.float32)}
        record = self.direct.upload_checkpoint("py-dl-cut", 1, state)
        self.proxy.add("GET", r"/content$", "cut_answer", times=1)
        with tempfile.TemporaryDirectory() as tmp:
            target = os.path.join(tmp, "ckpt.safetensors")
            self.client.download_checkpoint("py-dl-cut", 1, target)
            self.assertEqual(os.path.getsize(target), record["bytes"])
            loaded = trajgate.load(target)
        np.testing.assert_array_equal(loaded["w"], state["w"])
        self.assertEqual(self.actions("GET", "/content"), ["cut_answer", "pass"])
        ranges = [r for (m, p, _), r in zip(self.proxy.seen, self.proxy.ranges) if p.endswith("/content")]
        self.assertIsNone(ranges[0])
        self.assertRegex(ranges[1], r"^bytes=[1-9][0-9]*-$")

if __name__ == "__main__":
    unittest.main()


class ServerErrorsAndBackPressure(unittest.TestCase):
    def setUp(self) -> None:
        self.proxy = FlakyProxy(gateway_url())
        self.client = trajgate.Client(self.proxy.url, retry=FAST)
        self.direct = trajgate.Client(gateway_url())

    def tearDown(self) -> None:
        self.proxy.close()

    def test_503_is_retried(self) -> None:
        self.proxy.add("PUT", r"/checkpoints/3$", "503", times=2)
        record = self.client.upload_checkpoint("py-503", 3, weights(3))
        actions = [a for m, p, a in self.proxy.seen if p.endswith("/checkpoints/3")]
        self.assertEqual(actions, ["503", "503", "pass"])
        self.assertEqual(record["step"], 3)

    def test_503_beyond_the_retries_keeps_its_code(self) -> None:
        self.proxy.add("GET", r"/v1/runs/py-503b$", "503", times=10)
        client = trajgate.Client(self.proxy.url, retry=RetryPolicy(retries=2, base_delay=0.01))
        with self.assertRaises(TrajgateError) as caught:
            client.get_run("py-503b")
        self.assertEqual((caught.exception.code, caught.exception.status), ("storage_unavailable", 503))
        self.assertEqual(len([1 for m, p, a in self.proxy.seen if a == "503"]), 3)

    def test_a_full_metric_queue_makes_log_wait(self) -> None:
        # Batches of 1 point, at most 2 waiting or in flight, each request held 0.3 s by the proxy: the first
        # two log() calls return at once, later ones wait for a batch to finish.
        self.proxy.add("POST", r"/metrics$", "delay", times=100)
        with self.client.run("py-back-pressure", batch_size=1, metric_capacity=2) as run:
            waits = []
            for step in range(1, 7):
                t0 = time.monotonic()
                run.log(step, trainLoss=1.0)
                waits.append(time.monotonic() - t0)
        self.assertLess(max(waits[:2]), 0.1)
        self.assertGreater(sum(waits[2:]), 0.8)  # 4 more batches, one at a time, 0.3 s each
        points = self.direct.get_metrics("py-back-pressure")
        self.assertEqual([p["step"] for p in points], [1, 2, 3, 4, 5, 6])

    def test_a_full_upload_queue_makes_checkpoint_wait(self) -> None:
        self.proxy.add("PUT", r"/checkpoints/", "delay", times=100)
        with self.client.run("py-upload-back-pressure", upload_concurrency=1, upload_capacity=1) as run:
            t0 = time.monotonic()
            run.checkpoint(1, weights(1))
            first = time.monotonic() - t0
            t0 = time.monotonic()
            run.checkpoint(2, weights(2))
            second = time.monotonic() - t0
        self.assertLess(first, 0.2)
        self.assertGreater(second, 0.2)  # waited for the first upload (held 0.3 s) to finish
        self.assertEqual([c["step"] for c in self.direct.list_checkpoints("py-upload-back-pressure")], [1, 2])
