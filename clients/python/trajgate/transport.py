"""One HTTP exchange at a time over http.client: errors typed, retries with backoff, JSON in and out, the
bearer token on every request (kept out of reprs and error messages)."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from .errors import TrajgateConnectionError, TrajgateError, error_from_answer
from .retry import RetryPolicy, is_retryable, with_retry

#: A body factory: called once per attempt, yields the bytes to send.
BodyFactory = Callable[[], Iterable[bytes]]

_CONNECTION_ERRORS = (OSError, http.client.HTTPException)


class Response:
    """A 2xx answer whose body has not been read yet (downloads); `close()` when done."""

    def __init__(self, conn: http.client.HTTPConnection, raw: http.client.HTTPResponse, url: str) -> None:
        self._conn = conn
        self._raw = raw
        self._url = url
        self.status = raw.status
        self.headers = {k.lower(): v for k, v in raw.getheaders()}

    def iter_bytes(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The body in pieces; a connection cut part-way raises TrajgateConnectionError."""
        try:
            while True:
                chunk = self._raw.read(size)
                if not chunk:
                    break
                yield chunk
        except _CONNECTION_ERRORS as err:
            raise TrajgateConnectionError(self._url, err) from err
        # http.client's read(n) returns b"" when the connection closes early; Content-Length tells.
        if self._raw.length:
            cut = http.client.IncompleteRead(b"", self._raw.length)
            raise TrajgateConnectionError(self._url, cut)

    def read(self) -> bytes:
        return b"".join(self.iter_bytes())

    def close(self) -> None:
        self._conn.close()


class Transport:
    def __init__(self, url: str, token: Optional[str], timeout: float, retry: RetryPolicy) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the trajgate URL must be http:// or https:// with a host, got {url!r}")
        self.url = url
        self.retry = retry
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._base_path = parts.path.rstrip("/")
        self._timeout = timeout
        self.__token = token

    def __repr__(self) -> str:
        return f"Transport({self.url!r})"

    def json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: Optional[BodyFactory] = None,
        headers: Optional[Mapping[str, str]] = None,
        timed: bool = True,
        retry: bool = True,
    ) -> Any:
        """The request, retried on connection errors, 429 and 5xx unless `retry` is False; the parsed JSON."""

        def attempt(_: int) -> Any:
            res = self.send(method, path, json_body=json_body, body=body, headers=headers, timed=timed)
            try:
                data = res.read()
            finally:
                res.close()
            try:
                return json.loads(data)
            except ValueError:
                raise TrajgateError(res.status, "invalid_response", f"expected JSON, got: {data[:200]!r}") from None

        if not retry:
            return attempt(0)
        return with_retry(attempt, self.retry, is_retryable)

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: Optional[BodyFactory] = None,
        headers: Optional[Mapping[str, str]] = None,
        timed: bool = True,
    ) -> Response:
        """One attempt: a 2xx Response with its body unread, or TrajgateError / TrajgateConnectionError.
        Errors raised by the body factory itself (a file gone) propagate as they are, not as network errors."""
        all_headers = {"accept": "application/json"}
        all_headers.update(headers or {})
        if self.__token is not None:
            all_headers["authorization"] = f"Bearer {self.__token}"
        chunks: Iterable[bytes] = ()
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":"), allow_nan=False).encode("utf-8")
            all_headers["content-type"] = "application/json"
            all_headers["content-length"] = str(len(data))
            chunks = (data,)
        elif body is not None:
            chunks = body()
        elif method in ("POST", "PUT"):
            all_headers["content-length"] = "0"
        conn = self._connect(timed)
        try:
            raw = self._exchange(conn, method, path, all_headers, chunks)
        except BaseException:
            conn.close()
            raise
        if raw.status >= 300:
            try:
                payload = raw.read()
            except _CONNECTION_ERRORS:
                payload = b""
            conn.close()
            raise self._redact(error_from_answer(raw.status, raw.reason, _lower(raw.getheaders()), payload))
        return Response(conn, raw, self.url)

    def _connect(self, timed: bool) -> http.client.HTTPConnection:
        # Uploads and downloads are not timed as a whole, but a silent connection still fails after 10 minutes.
        timeout = self._timeout if timed else 600.0
        if self._scheme == "https":
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        headers: Mapping[str, str],
        chunks: Iterable[bytes],
    ) -> http.client.HTTPResponse:
        sent_error: Optional[BaseException] = None
        try:
            conn.putrequest(method, self._base_path + path, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
        except _CONNECTION_ERRORS as err:
            raise self._redact(TrajgateConnectionError(self.url, err)) from err
        source = iter(chunks)
        while True:
            chunk = next(source, None)  # the body's own errors (local I/O) propagate unchanged
            if chunk is None:
                break
            try:
                conn.send(chunk)
            except _CONNECTION_ERRORS as err:
                sent_error = err
                break
        try:
            # Even when sending failed the server may have answered already (a 4xx before reading the body).
            return conn.getresponse()
        except _CONNECTION_ERRORS as err:
            cause = sent_error or err
            raise self._redact(TrajgateConnectionError(self.url, cause)) from cause

    def _redact(self, err: Exception) -> Exception:
        token = self.__token
        if token and token in str(err):
            err.args = tuple(str(a).replace(token, "<token>") for a in err.args)
        return err


def _lower(pairs: Iterable[Tuple[str, str]]) -> dict:
    return {k.lower(): v for k, v in pairs}
