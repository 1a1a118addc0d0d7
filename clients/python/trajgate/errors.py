"""Errors the client raises. A server answer that is not a success is a TrajgateError carrying the server's
catalogue `code` (see error_codes.py); failing to reach the server at all is a TrajgateConnectionError."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Mapping


class TrajgateError(Exception):
    """An error answer from the gateway, or (with `status` 0) a check the client made itself, e.g. a
    download whose bytes do not hash to the checkpoint's SHA-256 (`checksum_mismatch`).

    `code` is the server's catalogue code (`invalid_run_id`, `checkpoint_conflict`, ...), or `http_<status>`
    when the answer was not trajgate's error shape (a proxy's error page, say). Client-side codes:
    `invalid_response` (a 2xx answer that was not the JSON promised)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details) if details else {}
        #: Seconds from a `Retry-After` header (429, 503); retries wait at least this long.
        self.retry_after = retry_after


class TrajgateConnectionError(Exception):
    """The gateway could not be reached, or the connection failed before a whole answer arrived."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"cannot reach trajgate at {url}: {type(cause).__name__}: {cause}")
        self.url = url
        self.__cause__ = cause


class BackgroundError(Exception):
    """Several background operations of a Run failed; `errors` holds each failure in the order it happened."""

    def __init__(self, errors: list[BaseException]) -> None:
        super().__init__(f"{len(errors)} background operations failed; first: {errors[0]}")
        self.errors = errors


def error_from_answer(status: int, reason: str, headers: Mapping[str, str], body: bytes) -> TrajgateError:
    """A non-2xx answer as a TrajgateError (the body is `{"error": {"code", "message", "details"}}`)."""
    text = body.decode("utf-8", "replace")
    error: TrajgateError | None = None
    try:
        parsed = json.loads(text)
        e = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(e, dict) and isinstance(e.get("code"), str):
            message = e.get("message") if isinstance(e.get("message"), str) else reason
            details = e.get("details") if isinstance(e.get("details"), dict) else None
            error = TrajgateError(status, e["code"], message, details)
    except ValueError:
        pass  # not JSON: a proxy's error page, say
    if error is None:
        error = TrajgateError(status, f"http_{status}", f"{status} {reason}" + (f": {text[:200]}" if text else ""))
    error.retry_after = parse_retry_after(headers.get("retry-after"))
    return error


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as delta-seconds or an HTTP date, in seconds from now."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, at.timestamp() - time.time())
