"""What a training loop talks to: `client.run(id, ...)`. Mirrors the TypeScript SDK's RunLogger."""

from __future__ import annotations

import math
import numbers
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from .client import Client, check_step, run_input
from .errors import BackgroundError
from .tensors import to_entry

#: Metric fields the server knows, by their snake_case aliases; any other name goes in the point's `extra`.
METRIC_ALIASES = {
    "train_loss": "trainLoss",
    "val_loss": "valLoss",
    "lr": "lr",
    "batch_size": "batchSize",
    "grad_norm": "gradNorm",
    "grad_variance": "gradVariance",
    "update_norm": "updateNorm",
    "gap_increment": "gapIncrement",
}
METRIC_FIELDS = frozenset(METRIC_ALIASES.values())


def metric_point(step: Any, metrics: Dict[str, Any]) -> Dict[str, Any]:
    """One point as the API takes it. Values are converted with float() (numpy scalars, 0-d tensors);
    non-finite values raise ValueError, which the server would refuse (invalid_request) anyway."""
    point: Dict[str, Any] = {"step": check_step(step)}
    extra: Dict[str, float] = {}
    for name, value in metrics.items():
        if name == "extra" and isinstance(value, dict):
            for k, v in value.items():
                extra[k] = _finite(k, v)
            continue
        field = METRIC_ALIASES.get(name, name)
        if field == "batchSize":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise ValueError(f"batchSize must be a positive integer, got {value!r}")
            point[field] = int(value)
        elif field in METRIC_FIELDS:
            point[field] = _finite(field, value)
        else:
            extra[name] = _finite(name, value)
    if extra:
        point["extra"] = extra
    return point


def _finite(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"metric {name!r} is {x}: the gateway stores finite numbers only")
    return x


class Run:
    """`log()` and `checkpoint()` hand work to bounded background queues and return at once, waiting only
    while a queue is full (back-pressure). Metric points are sent in batches of `batch_size` (or whatever
    has gathered after `flush_interval` seconds), one batch at a time, in the order logged, each with an
    Idempotency-Key (a retried batch is stored once); uploads run `upload_concurrency` at once.

    Failures are never dropped: each goes to `on_error` as it happens, and `flush()` / `close()` raise
    them (the one failure, or BackgroundError with all of them). Use it as a context manager or call
    `close()` at the end: the worker threads are daemons, so what is still queued when the process exits
    without close() is lost."""

    def __init__(
        self,
        client: Client,
        run_id: str,
        *,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        metric_capacity: int = 32,
        upload_concurrency: int = 2,
        upload_capacity: int = 4,
        on_error: Optional[Callable[[BaseException], None]] = None,
        on_uploaded: Optional[Callable[[Dict[str, Any]], None]] = None,
        **run_fields: Any,
    ) -> None:
        self.id = run_id
        self._client = client
        self._fields = run_input(run_fields)
        self._batch_size = max(1, batch_size)
        self._flush_interval = flush_interval
        self._metric_capacity = max(1, metric_capacity)
        self._on_error = on_error
        self._on_uploaded = on_uploaded
        self._failures: List[BaseException] = []
        self._closed = False
        self._ready = False
        self._ready_lock = threading.Lock()
        # Metrics: the points being gathered, the batches waiting, and the one in flight, under one condition.
        self._cond = threading.Condition()
        self._buffer: List[Dict[str, Any]] = []
        self._buffer_since = 0.0
        self._batches: List[List[Dict[str, Any]]] = []
        self._in_flight = 0
        self._stop = False
        self._metric_thread = threading.Thread(target=self._send_metrics, name=f"trajgate-metrics-{run_id}", daemon=True)
        self._metric_thread.start()
        # Uploads: `upload_capacity` tasks waiting or running at most; `upload_concurrency` threads run them.
        self._upload_slots = threading.Semaphore(max(upload_concurrency, upload_capacity))
        self._uploads: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue()
        self._upload_pending = 0
        self._upload_threads = [
            threading.Thread(target=self._run_uploads, name=f"trajgate-upload-{run_id}-{i}", daemon=True)
            for i in range(max(1, upload_concurrency))
        ]
        for t in self._upload_threads:
            t.start()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception:  # noqa: BLE001 - the training loop's own exception is the one to see
            pass

    def log(self, step: int, **metrics: Any) -> None:
        """Records one metric point: `run.log(step, trainLoss=0.4, lr=0.1, gradNorm=...)`. Names as the API
        has them (trainLoss, valLoss, lr, batchSize, gradNorm, gradVariance, updateNorm, gapIncrement) or
        their snake_case aliases; any other name goes into the point's `extra`. Returns at once, unless a
        full batch finds `metric_capacity` batches waiting or in flight: then it waits for room."""
        point = metric_point(step, metrics)
        with self._cond:
            self._assert_open()
            if not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer.append(point)
            if len(self._buffer) >= self._batch_size:
                while len(self._batches) + self._in_flight >= self._metric_capacity:
                    self._cond.wait()
                self._batches.append(self._buffer)
                self._buffer = []
                self._cond.notify_all()

    def checkpoint(self, step: int, state: Any, *, pin: bool = False, copy: bool = True) -> None:
        """Queues an upload of the checkpoint at `step`: a file path, a directory of .safetensors shards, or a
        mapping name -> array/tensor (numpy, torch, JAX, RawTensor), written as safetensors as it streams.
        Returns once queued: at once unless `upload_capacity` uploads are waiting or running. With `copy`
        (the default) tensors are copied now, so training may go on updating them; `copy=False` sends
        them from their own memory when the upload runs (do not change them before `flush()`)."""
        step = check_step(step)
        with self._cond:
            self._assert_open()
        if isinstance(state, Mapping):
            # Tensors are converted (and copied) now, on the caller's thread; hashing and sending come later.
            state = {name: to_entry(name, value, copy) for name, value in state.items()}
        self._upload_slots.acquire()
        with self._cond:
            self._upload_pending += 1

        def task() -> None:
            self._ensure_run()
            result = self._client.upload_checkpoint(self.id, step, state, pin=pin, copy=False)
            if self._on_uploaded:
                self._on_uploaded(result)

        self._uploads.put(task)

    def flush(self) -> None:
        """Sends buffered points and waits for every queued batch and upload; raises the failures so far."""
        with self._cond:
            if self._buffer:
                self._batches.append(self._buffer)
                self._buffer = []
                self._cond.notify_all()
            while self._batches or self._in_flight or self._upload_pending:
                self._cond.wait()
            failures, self._failures = self._failures, []
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise BackgroundError(failures)

    def close(self) -> None:
        """Flushes, then stops the worker threads and refuses further work; raises any failure not yet reported."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._stop = True
                self._cond.notify_all()
            for _ in self._upload_threads:
                self._uploads.put(None)
            for t in [self._metric_thread, *self._upload_threads]:
                t.join()

    def _assert_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"run {self.id!r} is closed")

    def _fail(self, err: BaseException) -> None:
        with self._cond:
            self._failures.append(err)
        if self._on_error:
            try:
                self._on_error(err)
            except Exception:  # noqa: BLE001 - a failing callback must not kill the worker
                pass

    def _send_metrics(self) -> None:
        while True:
            with self._cond:
                while not self._batches:
                    if self._stop:
                        return
                    if self._buffer:
                        due = self._buffer_since + self._flush_interval - time.monotonic()
                        if due <= 0:
                            self._batches.append(self._buffer)
                            self._buffer = []
                            break
                        self._cond.wait(due)
                    else:
                        self._cond.wait()
                batch = self._batches.pop(0)
                self._in_flight += 1
            try:
                self._ensure_run()
                self._client.log_metrics(self.id, batch)
            except Exception as err:  # noqa: BLE001 - kept for flush()/close()
                self._fail(err)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _run_uploads(self) -> None:
        while True:
            task = self._uploads.get()
            if task is None:
                return
            try:
                task()
            except Exception as err:  # noqa: BLE001 - kept for flush()/close()
                self._fail(err)
            finally:
                self._upload_slots.release()
                with self._cond:
                    self._upload_pending -= 1
                    self._cond.notify_all()

    def _ensure_run(self) -> None:
        """PUTs the run's fields once before its first batch or upload; a failed attempt is tried again next time."""
        if not self._fields:
            return
        with self._ready_lock:
            if not self._ready:
                self._client.put_run(self.id, **self._fields)
                self._ready = True
