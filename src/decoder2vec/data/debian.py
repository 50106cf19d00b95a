"""Debian packages as data: fetch one .deb with `apt-get download` (no root, nothing installed)
and read its files in Python (a .deb is an ar archive holding data.tar.*), so the data sources
need neither dpkg nor an installed package."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

from ..errors import Decoder2VecError


def download_deb(package: str, into: Path) -> Path:
    """`apt-get download <package>` into `into`; the .deb's path, or one line saying what to do."""
    if shutil.which("apt-get") is None:
        raise Decoder2VecError(f"the {package} data needs Debian's apt-get (apt-get download {package}); "
                               f"on another system put the package's .deb contents in decoder2vec's data cache")
    result = subprocess.run(["apt-get", "download", package], cwd=into, capture_output=True, text=True)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        reason = (result.stderr.strip().splitlines() or ["no .deb written"])[-1][-300:]
        raise Decoder2VecError(f"apt-get download {package} failed ({reason}); run `apt-get update` as root once, "
                               "then retry")
    return debs[0]


def deb_members(deb: Path):
    """(name, bytes) of every regular file in a .deb."""
    blob = deb.read_bytes()
    pos = 8  # "!<arch>\n"
    while pos < len(blob):
        name = blob[pos:pos + 16].decode().strip().rstrip("/")
        size = int(blob[pos + 48:pos + 58].decode().strip())
        body = blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        yield member.name, tar.extractfile(member).read()
