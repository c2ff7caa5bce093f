"""``sourcedir.tar.gz`` of the training code, built the same byte for byte on every synth.

SageMaker's framework containers take script-mode code as a gzipped tarball. The tarball is built at
synth from the files in ``training_code/`` (Python and JSON only: no tests, caches or requirement
files, so nothing is pip-installed when a job starts, which network isolation would forbid) with
fixed timestamps, owners and order, so its content hash, and therefore the CDK asset and the
pipeline definition, only change when the code does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

TRAINING_CODE_DIR = Path(__file__).resolve().parent.parent / "training_code"
BUNDLED_SUFFIXES = (".py", ".json")


def bundled_files(source: Path = TRAINING_CODE_DIR) -> list[Path]:
    return sorted(p for p in source.iterdir() if p.is_file() and p.suffix in BUNDLED_SUFFIXES)


def build_bundle(source: Path = TRAINING_CODE_DIR) -> bytes:
    """The gzipped tarball of ``source``'s code, with every file at the archive's root."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in bundled_files(source):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(tar_bytes.getvalue())
    return compressed.getvalue()


def training_code_bundle(source: Path = TRAINING_CODE_DIR) -> Path:
    """Write the bundle to a content-addressed file and return its path (for a CDK file asset)."""
    data = build_bundle(source)
    folder = Path(tempfile.gettempdir()) / "ml-platform-assets" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sourcedir.tar.gz"
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path
