"""An in-tree PEP 517 build backend for this pure-Python package, standard library only, so that
`pip install ./clients/python` works offline on machines without the `wheel` package (which setuptools
before 70 needs to build any wheel). It writes the wheel format directly: the package's files, METADATA,
WHEEL and RECORD (with SHA-256s), tagged py3-none-any."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "trajgate"


def _project() -> dict:
    """The [project] table's simple `key = "value"` lines from pyproject.toml (tomllib is 3.11+)."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([^"]*)"', section, re.MULTILINE))


def _metadata() -> str:
    p = _project()
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {p['name']}\n"
        f"Version: {p['version']}\n"
        f"Summary: {p['description']}\n"
        "License: Apache-2.0\n"
        f"Requires-Python: {p['requires-python']}\n"
        "Provides-Extra: numpy\n"
        'Requires-Dist: numpy>=1.20; extra == "numpy"\n'
    )


def _dist_info() -> str:
    p = _project()
    return f"{p['name']}-{p['version']}.dist-info"


def _package_files() -> list:
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, NAME)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py") or name == "py.typed":
                full = os.path.join(dirpath, name)
                out.append((os.path.relpath(full, ROOT).replace(os.sep, "/"), full))
    return out


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    dist_info = os.path.join(metadata_directory, _dist_info())
    os.makedirs(dist_info, exist_ok=True)
    with open(os.path.join(dist_info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    return _dist_info()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    filename = f"{p['name']}-{p['version']}-py3-none-any.whl"
    dist_info = _dist_info()
    entries = [(arc, open(full, "rb").read()) for arc, full in _package_files()]
    entries.append((f"{dist_info}/METADATA", _metadata().encode()))
    entries.append(
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: trajgate-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    )
    record = "\n".join(_record_line(arc, data) for arc, data in entries) + f"\n{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in entries:
            z.writestr(arc, data)
        z.writestr(f"{dist_info}/RECORD", record)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    p = _project()
    base = f"{p['name']}-{p['version']}"
    filename = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as tar:
        for rel in ["pyproject.toml", "_build/backend.py"] + [arc for arc, _ in _package_files()]:
            tar.add(os.path.join(ROOT, rel), arcname=f"{base}/{rel}")
        info = os.path.join(sdist_directory, "PKG-INFO")
        with open(info, "w", encoding="utf-8") as f:
            f.write(_metadata())
        tar.add(info, arcname=f"{base}/PKG-INFO")
        os.remove(info)
    return filename
