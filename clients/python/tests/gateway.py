"""The gateway the tests talk to: $TRAJGATE_TEST_URL when set (test/python-client.test.ts starts one and
sets it), else a gateway child process from this repository (`node --import tsx src/main.ts`) on embedded
defaults in a temporary directory, started once per test process and stopped at exit."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
_lock = threading.Lock()
_url = None


def gateway_url() -> str:
    global _url
    with _lock:
        if _url is None:
            _url = os.environ.get("TRAJGATE_TEST_URL") or _start_child()
        return _url


def _start_child() -> str:
    data_dir = tempfile.mkdtemp(prefix="trajgate-pytest-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJGATE_")}
    env.update(
        PORT="0",
        HOST="127.0.0.1",
        TRAJGATE_AUTH="none",
        TRAJGATE_RATE_LIMIT_RPS="0",
        TRAJGATE_LOG_LEVEL="info",
        TRAJGATE_DATA_DIR=data_dir,
    )
    child = subprocess.Popen(
        ["node", "--import", "tsx", os.path.join(ROOT, "src", "main.ts")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def stop() -> None:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
        shutil.rmtree(data_dir, ignore_errors=True)

    atexit.register(stop)
    lines = []
    assert child.stdout is not None
    for line in child.stdout:
        lines.append(line)
        m = re.search(r'"url":"(http:[^"]+)"', line)
        if m:
            # Keep reading its output so the pipe never fills.
            threading.Thread(target=lambda: [None for _ in child.stdout], daemon=True).start()
            return m.group(1)
    raise RuntimeError("the gateway exited before listening:\n" + "".join(lines[-40:]))
