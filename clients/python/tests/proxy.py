"""A TCP proxy in front of the gateway that misbehaves on request: it reads each request's head to learn
its method and path, and for the next matching requests either cuts the connection half-way through the
request body, forwards the whole request but drops the gateway's answer (the commit happened, the client
never hears of it) or cuts it half-way, holds the request a while before forwarding it, or answers 429 or
503 itself. Anything else is passed through untouched."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple


#: How long a "delay" request is held before it is forwarded.
DELAY_SECONDS = 0.3


def _answer(status: str, code: str, extra: str) -> bytes:
    body = ('{"error":{"code":"%s","message":"from the test proxy"}}' % code).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


_ANSWERS = {
    "429": _answer("429 Too Many Requests", "rate_limited", "Retry-After: 1\r\n"),
    "503": _answer("503 Service Unavailable", "storage_unavailable", ""),
}


@dataclass
class Rule:
    method: str
    path: str  # a regular expression matched against the request path
    action: str  # "cut_request" | "drop_answer" | "cut_answer" | "delay" | "429" | "503"
    times: int


class FlakyProxy:
    def __init__(self, upstream_url: str) -> None:
        m = re.match(r"http://([^:/]+):(\d+)", upstream_url)
        assert m, upstream_url
        self.upstream = (m.group(1), int(m.group(2)))
        self.rules: List[Rule] = []
        #: (method, path, action taken) for every request seen.
        self.seen: List[Tuple[str, str, str]] = []
        #: The Range header of every request seen (None where absent).
        self.ranges: List[Optional[str]] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def add(self, method: str, path: str, action: str, times: int = 1) -> None:
        with self._lock:
            self.rules.append(Rule(method, path, action, times))

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _action(self, method: str, path: str) -> str:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.method == method and re.search(rule.path, path):
                    rule.times -= 1
                    self.seen.append((method, path, rule.action))
                    return rule.action
            self.seen.append((method, path, "pass"))
            return "pass"

    def _serve(self, client: socket.socket) -> None:
        upstream: Optional[socket.socket] = None
        try:
            while True:  # one request after another on a kept-alive connection
                head, rest = _read_head(client)
                if head is None:
                    return
                method, path = head.split(b" ", 2)[:2]
                length = _content_length(head)
                action = self._action(method.decode(), path.decode())
                m = re.search(rb"\r\nrange:\s*([^\r]+)", head, re.IGNORECASE)
                self.ranges.append(m.group(1).decode() if m else None)
                if action in _ANSWERS:
                    _drain(client, rest, length)
                    client.sendall(_ANSWERS[action])
                    return
                if action == "delay":
                    time.sleep(DELAY_SECONDS)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                if action == "cut_request":
                    first = rest[: length // 2]
                    upstream.sendall(head + first)
                    _forward(client, upstream, length // 2 - len(first))
                    return  # both sockets close mid-body
                first = rest[:length]
                upstream.sendall(head + first)
                _forward(client, upstream, length - len(first))
                answer = _read_answer(upstream)
                if action == "drop_answer" or answer is None:
                    return
                if action == "cut_answer":
                    client.sendall(answer[: len(answer) // 2])
                    return
                client.sendall(answer)
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()


def _read_head(sock: socket.socket) -> Tuple[Optional[bytes], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def _content_length(head: bytes) -> int:
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    return int(m.group(1)) if m else 0


def _drain(sock: socket.socket, rest: bytes, length: int) -> None:
    left = length - len(rest)
    while left > 0:
        chunk = sock.recv(min(65536, left))
        if not chunk:
            return
        left -= len(chunk)


def _forward(src: socket.socket, dst: socket.socket, n: int) -> None:
    while n > 0:
        chunk = src.recv(min(65536, n))
        if not chunk:
            raise OSError("the client went away")
        dst.sendall(chunk)
        n -= len(chunk)


def _read_answer(sock: socket.socket) -> Optional[bytes]:
    head, rest = _read_head(sock)
    if head is None:
        return None
    length = _content_length(head)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head + rest[:length]
