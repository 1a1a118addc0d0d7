"""A client for trajgate's REST API (openapi/trajgate.yaml), mirroring the TypeScript SDK's TrajgateClient."""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
import uuid
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional
from urllib.parse import quote, urlencode

from .download import download_to_file
from .errors import TrajgateError
from .retry import RetryPolicy
from .sources import DEFAULT_HASH_FIRST_BYTES, prepare
from .transport import Transport

SHA256_HEADER = "x-trajgate-sha256"
#: The most points the server takes in one batch (TRAJGATE_MAX_POINTS_PER_BATCH's default).
MAX_POINTS_PER_REQUEST = 100_000
# Served beside a sharded step's files: the Hugging Face index naming them.
SHARD_INDEX_FILE = "model.safetensors.index.json"


class Client:
    """A typed client for one gateway. Thread-safe: every call opens its own connection.

    Server errors raise TrajgateError (with the server's catalogue `code`), failures to connect
    TrajgateConnectionError. Connection errors, 429 (waiting at least its Retry-After) and 5xx are retried with
    exponential backoff and full jitter; other 4xx never (401 `unauthenticated`, 403 `forbidden` fail at once).
    Answers are the server's JSON as dicts, keys as the API names them (camelCase)."""

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        retry: RetryPolicy = RetryPolicy(),
        timeout: float = 30.0,
    ) -> None:
        """`url` defaults to $TRAJGATE_URL, `token` to $TRAJGATE_TOKEN (sent as `Authorization: Bearer`;
        pass "" to send none). `timeout` bounds each JSON call in seconds; uploads and downloads are not timed
        as a whole."""
        url = url if url is not None else os.environ.get("TRAJGATE_URL")
        if not url:
            raise ValueError("give the gateway's URL, or set TRAJGATE_URL")
        self.url = url.rstrip("/")
        token = (token if token is not None else os.environ.get("TRAJGATE_TOKEN", "")).strip()
        if token and not re.fullmatch(r"[\x21-\x7e]+", token):
            raise ValueError("the trajgate token (token= or $TRAJGATE_TOKEN) has spaces or non-ASCII characters")
        self._transport = Transport(self.url, token or None, timeout, retry)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # Runs

    def run(self, run_id: str, **options: Any) -> "Run":
        """A handle for a training loop (see Run): `log()` and `checkpoint()` hand work to bounded background
        queues. Run fields (`planned_steps`, `train_size`, `tags`, `allow_shape_change`,
        `calibration_group`) create or update the run before its first batch or upload."""
        from .run import Run

        return Run(self, run_id, **options)

    def put_run(self, run_id: str, **fields: Any) -> Dict[str, Any]:
        """Creates the run, or updates the fields given (snake_case or camelCase); absent fields keep their values."""
        return self._json("PUT", f"/v1/runs/{_enc(run_id)}", json_body=run_input(fields))

    def get_run(self, run_id: str) -> Dict[str, Any]:
        return self._json("GET", f"/v1/runs/{_enc(run_id)}")

    def list_runs(self) -> List[Dict[str, Any]]:
        items: List[Dict[str, Any]] = []
        after: Optional[str] = ""
        while after is not None:
            page = self._json("GET", "/v1/runs" + _query(limit=1000, after=after or None))
            items.extend(page["items"])
            after = page["next"]
        return items

    # Checkpoints

    def upload_checkpoint(
        self,
        run_id: str,
        step: int,
        state: Any,
        *,
        pin: bool = False,
        copy: bool = True,
        hash_first_bytes: int = DEFAULT_HASH_FIRST_BYTES,
    ) -> Dict[str, Any]:
        """Uploads the checkpoint for `step` and returns the stored record with the retention decision it
        triggered. `state`: a file path, a directory of .safetensors shards, or a mapping name ->
        array/tensor (see sources.py). Sources up to `hash_first_bytes` are hashed first and the SHA-256 sent,
        so the server refuses bytes that changed on the way; larger ones are hashed as they stream and
        checked against the server's answer. Retried on connection errors, 429 and 5xx: the same bytes for
        the same step are stored once (the server answers 200 again); different bytes for a committed step
        are refused with `checkpoint_conflict`."""
        step = check_step(step)
        prepared = prepare(state, hash_first_bytes, copy)
        headers = {"content-type": prepared.content_type, "content-length": str(prepared.size)}
        if prepared.sha256:
            headers[SHA256_HEADER] = prepared.sha256
        taps: List[_HashTap] = []

        def body() -> Iterator[Any]:
            tap = _HashTap(prepared.open())
            taps.append(tap)
            return iter(tap)

        path = f"/v1/runs/{_enc(run_id)}/checkpoints/{step}" + ("?pin=true" if pin else "")
        result = self._json("PUT", path, body=body, headers=headers, timed=False)
        last = taps[-1] if taps else None
        if not prepared.sha256 and last is not None and last.complete and last.hexdigest() != result.get("sha256"):
            raise TrajgateError(
                0,
                "checksum_mismatch",
                f"the server stored bytes hashing to {result.get('sha256')}; the client sent {last.hexdigest()}",
                {"run": run_id, "step": step},
            )
        return result

    def list_checkpoints(
        self, run_id: str, status: Optional[str] = None, *, tensors: bool = False
    ) -> List[Dict[str, Any]]:
        """Every checkpoint of the run by step (following the server's pages), with indicators, retention
        classes and reasons; `status` ('kept', 'discarded', ...) filters; `tensors` adds tensor tables."""
        items: List[Dict[str, Any]] = []
        after: Optional[int] = None
        limit = 100 if tensors else 1000
        while True:
            q = _query(status=status, after=after, limit=limit, include="tensors" if tensors else None)
            page = self._json("GET", f"/v1/runs/{_enc(run_id)}/checkpoints{q}")
            items.extend(page["items"])
            if page["next"] is None:
                return items
            after = page["next"]

    def get_checkpoint(self, run_id: str, step: int) -> Dict[str, Any]:
        return self._json("GET", f"/v1/runs/{_enc(run_id)}/checkpoints/{int(step)}")

    def download_checkpoint(self, run_id: str, step: int, target: str) -> Dict[str, Any]:
        """Downloads a checkpoint's bytes to the file `target`, verified against its SHA-256, and returns its
        record. Goes by way of `target + '.partial'`, resuming what an earlier attempt left there with a
        Range request (guarded by If-Range: changed bytes restart from zero); renamed into place once
        verified. A discarded checkpoint fails with `checkpoint_discarded` (410).

        A sharded step (its files sent one by one to .../shards/{file}, e.g. by the TypeScript SDK's
        uploadCheckpointDir) goes to the directory `target`, created if needed: each file downloaded and
        verified as above, then the step's model.safetensors.index.json."""
        record = self.get_checkpoint(run_id, step)
        base = f"/v1/runs/{_enc(run_id)}/checkpoints/{int(step)}"
        target = os.fspath(target)
        if not record.get("shards"):
            download_to_file(self._transport, f"{base}/content", record["bytes"], record["sha256"], target)
            return record
        os.makedirs(target, exist_ok=True)
        for shard in record["shards"]:
            name = shard["file"]
            if os.path.basename(name) != name or name in (".", ".."):
                raise ValueError(f"step {step} of run {run_id!r} names a file {name!r} that is not a plain file name")
            path = f"{base}/shards/{_enc(name)}"
            download_to_file(self._transport, path, shard["bytes"], shard["sha256"], os.path.join(target, name))
        index = self._json("GET", f"{base}/shards/{SHARD_INDEX_FILE}")
        with open(os.path.join(target, SHARD_INDEX_FILE), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
        return record

    def pin(self, run_id: str, step: int) -> Dict[str, Any]:
        """Pins a checkpoint (no retention class evicts it); returns it after the new decision."""
        return self._json("POST", f"/v1/runs/{_enc(run_id)}/checkpoints/{int(step)}/pin")

    def unpin(self, run_id: str, step: int) -> Dict[str, Any]:
        return self._json("POST", f"/v1/runs/{_enc(run_id)}/checkpoints/{int(step)}/unpin")

    def restore(self, run_id: str, step: int) -> Dict[str, Any]:
        """Brings back a discarded checkpoint within its grace period (it comes back pinned)."""
        return self._json("POST", f"/v1/runs/{_enc(run_id)}/checkpoints/{int(step)}/restore")

    # Metrics

    def log_metrics(self, run_id: str, points: Iterable[Mapping[str, Any]]) -> int:
        """Appends metric points (as the API names them: `{"step": 3, "trainLoss": 0.4}`) in requests of at
        most 100,000; returns how many the server accepted. Each request carries an Idempotency-Key, the
        same on every retry, so a batch whose answer was lost is stored once. Training code uses
        `run(id).log(step, ...)` instead, which batches in the background."""
        points = list(points)
        accepted = 0
        for i in range(0, len(points), MAX_POINTS_PER_REQUEST):
            batch = points[i : i + MAX_POINTS_PER_REQUEST]
            headers = {"idempotency-key": str(uuid.uuid4())}
            answer = self._json(
                "POST", f"/v1/runs/{_enc(run_id)}/metrics", json_body={"points": batch}, headers=headers
            )
            accepted += answer["accepted"]
        return accepted

    def get_metrics(
        self, run_id: str, from_step: Optional[int] = None, to_step: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """The run's metric series (or the steps asked for), ordered by step then arrival, following pages."""
        points: List[Dict[str, Any]] = []
        after: Optional[str] = None
        while True:
            q = _query(fromStep=from_step, toStep=to_step, after=after, limit=10_000)
            page = self._json("GET", f"/v1/runs/{_enc(run_id)}/metrics{q}")
            points.extend(page["items"])
            if page["next"] is None:
                return points
            after = page["next"]

    # Analysis

    def get_trajectory(
        self, run_id: str, *, phases: Optional[int] = None, by: Optional[str] = None, window: Optional[int] = None
    ) -> Dict[str, Any]:
        """Per-checkpoint indicators, phases and change scores."""
        return self._json("GET", f"/v1/runs/{_enc(run_id)}/trajectory" + _query(phases=phases, by=by, window=window))

    def get_estimate(self, run_id: str, *, calibrate_until_step: Optional[int] = None) -> Dict[str, Any]:
        """The trajectory-based generalization estimate (docs/architecture.md)."""
        q = _query(calibrateUntilStep=calibrate_until_step)
        return self._json("GET", f"/v1/runs/{_enc(run_id)}/estimate{q}")

    # Policies

    def list_policies(self) -> List[Dict[str, Any]]:
        return self._json("GET", "/v1/policies")["items"]

    def put_policy(self, name: str, policy: Mapping[str, Any]) -> Dict[str, Any]:
        """Creates or replaces a named policy; runs using it get it on their next decision."""
        return self._json("PUT", f"/v1/policies/{_enc(name)}", json_body=dict(policy))

    def set_policy(
        self, run_id: str, name: Optional[str] = None, policy: Optional[Mapping[str, Any]] = None
    ) -> Dict[str, Any]:
        """Attaches a policy to a run, by name or inline (`policy={"budget": {"maxCheckpoints": 5}}`), and
        applies it now; returns `{"run", "decision"}`."""
        if (name is None) == (policy is None):
            raise ValueError("give exactly one of name= or policy=")
        ref = {"name": name} if name is not None else {"policy": dict(policy or {})}
        return self._json("PUT", f"/v1/runs/{_enc(run_id)}/policy", json_body=ref)

    def simulate_retention(
        self, run_id: str, name: Optional[str] = None, policy: Optional[Mapping[str, Any]] = None
    ) -> Dict[str, Any]:
        """What a policy (by default the run's own) would keep now, without touching storage."""
        ref: Dict[str, Any] = {}
        if name is not None:
            ref["name"] = name
        if policy is not None:
            ref["policy"] = dict(policy)
        return self._json("POST", f"/v1/runs/{_enc(run_id)}/retention/simulate", json_body=ref)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._transport.json(method, path, **kwargs)


#: Run fields as the API names them, by their snake_case spelling.
RUN_FIELDS = {
    "planned_steps": "plannedSteps",
    "train_size": "trainSize",
    "allow_shape_change": "allowShapeChange",
    "tags": "tags",
    "calibration_group": "calibrationGroup",
}


def run_input(fields: Mapping[str, Any]) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    for key, value in fields.items():
        api = RUN_FIELDS.get(key, key if key in RUN_FIELDS.values() else None)
        if api is None:
            raise TypeError(f"unknown run field {key!r}; known: {', '.join(RUN_FIELDS)}")
        body[api] = value
    return body


class _HashTap:
    """Passes a body through, hashing what was handed to the connection."""

    def __init__(self, source: Iterator[Any]) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.complete = False

    def __iter__(self) -> Iterator[Any]:
        for piece in self._source:
            self._hash.update(piece)
            yield piece
        self.complete = True

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def check_step(step: Any) -> int:
    """`step` as an int (numpy integers included), or ValueError."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


def _enc(value: str) -> str:
    return quote(str(value), safe="")


def _query(**params: Any) -> str:
    kept = {k: v for k, v in params.items() if v is not None}
    return "?" + urlencode(kept) if kept else ""
