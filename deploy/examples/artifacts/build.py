"""Build app.tgz from app/ reproducibly (fixed owner, mode and time), so its SHA-256 in app.yaml holds.

python deploy/examples/artifacts/build.py     # prints the tarball's sha256
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted((HERE / "app").rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(str(path.relative_to(HERE)))
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o755, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


if __name__ == "__main__":
    data = build()
    (HERE / "app.tgz").write_bytes(data)
    print(hashlib.sha256(data).hexdigest())
