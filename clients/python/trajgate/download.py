"""Downloads resumed with Range requests and verified against the checkpoint's SHA-256."""

from __future__ import annotations

import hashlib
import os

from .errors import TrajgateError
from .retry import with_retry
from .transport import Transport


def download_to_file(transport: Transport, path: str, size: int, sha256: str, target: str) -> None:
    """Downloads into `target` by way of `target + '.partial'`: whatever a cut-short attempt (this call's or
    an earlier process's) left there is resumed with `Range: bytes=N-` and `If-Range: "<sha256>"`, so if the
    bytes behind the URL changed the server sends them whole and the partial file is overwritten. The result
    is verified against the SHA-256 before it is renamed into place; a resumed file that fails the check is
    downloaded once more from the start."""
    partial = target + ".partial"
    for attempt_pass in range(2):
        resumed = {"from": 0}

        def attempt(_: int) -> None:
            have = os.path.getsize(partial) if os.path.exists(partial) else 0
            if have > size:
                have = 0  # longer than the checkpoint: not a prefix of it
            if have == size:
                return
            resumed["from"] = resumed["from"] or have
            headers = {"range": f"bytes={have}-", "if-range": f'"{sha256}"'} if have else {}
            res = transport.send("GET", path, headers=headers, timed=False)
            try:
                offset = have if res.status == 206 else 0
                with open(partial, "r+b" if offset else "wb") as f:
                    f.seek(offset)
                    f.truncate()
                    for chunk in res.iter_bytes():
                        f.write(chunk)
            finally:
                res.close()

        with_retry(attempt, transport.retry)
        digest = _sha256_file(partial)
        if digest == sha256:
            os.replace(partial, target)
            return
        os.remove(partial)
        if resumed["from"] == 0 or attempt_pass > 0:
            raise TrajgateError(
                0, "checksum_mismatch", f"downloaded bytes hash to {digest}; the checkpoint's SHA-256 is {sha256}"
            )


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()
