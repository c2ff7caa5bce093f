"""``sourcedir.tar.gz`` code bundles, built the same byte for byte on every synth.

SageMaker's framework containers take script-mode code as a gzipped tarball. A bundle is built at
synth from Python and JSON files only (no tests, caches or requirement files, so nothing is
pip-installed when a job starts, which network isolation would forbid), every file at the archive's
root, with fixed timestamps, owners and order, so its content hash, and therefore the CDK asset and
the pipeline definition, only change when the code does.

Two bundles exist: the training code (every script of ``training_code/``) and the monitoring code
(``monitoring_code/*.py`` plus the feature schema it imports from ``training_code/``, flat beside it,
as ``monitoring_code/CONTRACT.md`` asks).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAINING_CODE_DIR = ROOT / "training_code"
MONITORING_CODE_DIR = ROOT / "monitoring_code"
BUNDLED_SUFFIXES = (".py", ".json")
# What the monitoring scripts import from the training code (the feature schema), shipped beside them.
SHARED_SCHEMA_FILES = ("feature_schema.py", "feature_schema.json")


class BundleError(ValueError):
    """A bundle cannot be built from the given folders; the message says which file and what to do."""


def bundled_files(source: Path = TRAINING_CODE_DIR) -> list[Path]:
    return sorted(p for p in source.iterdir() if p.is_file() and p.suffix in BUNDLED_SUFFIXES)


def monitoring_bundle_files(source: Path = MONITORING_CODE_DIR, training: Path = TRAINING_CODE_DIR) -> list[Path]:
    """``source``'s Python modules plus the feature schema files of ``training``."""
    if not source.is_dir():
        raise BundleError(f"the monitoring code folder {source} does not exist; it holds baseline.py and monitor.py")
    scripts = sorted(p for p in source.iterdir() if p.is_file() and p.suffix == ".py")
    if not scripts:
        raise BundleError(f"{source} holds no .py file; the monitoring bundle needs baseline.py and monitor.py")
    schema = [training / name for name in SHARED_SCHEMA_FILES]
    for path in schema:
        if not path.is_file():
            raise BundleError(f"{path} is missing; the monitoring scripts import the feature schema from it")
    return [*scripts, *schema]


def build_flat_bundle(files: Sequence[Path]) -> bytes:
    """The gzipped tarball of ``files``, each at the archive's root, ordered by name."""
    by_name: dict[str, Path] = {}
    for path in files:
        if path.name in by_name:
            raise BundleError(f"{path} and {by_name[path.name]} would both land at the bundle's root as {path.name}")
        by_name[path.name] = path
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in sorted(by_name.items()):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(tar_bytes.getvalue())
    return compressed.getvalue()


def build_bundle(source: Path = TRAINING_CODE_DIR) -> bytes:
    """The gzipped tarball of ``source``'s code, with every file at the archive's root."""
    return build_flat_bundle(bundled_files(source))


def content_addressed_file(data: bytes, name: str) -> Path:
    """Write ``data`` to ``<tmp>/ml-platform-assets/<hash>/<name>`` (once) and return the path, for a
    CDK file asset whose hash follows the content."""
    folder = Path(tempfile.gettempdir()) / "ml-platform-assets" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def training_code_bundle(source: Path = TRAINING_CODE_DIR) -> Path:
    """Write the training bundle to a content-addressed file and return its path (for a CDK file asset)."""
    return content_addressed_file(build_bundle(source), "sourcedir.tar.gz")


def monitoring_code_bundle(source: Path = MONITORING_CODE_DIR, training: Path = TRAINING_CODE_DIR) -> Path:
    """Write the monitoring bundle to a content-addressed file and return its path (for a CDK file asset)."""
    return content_addressed_file(build_flat_bundle(monitoring_bundle_files(source, training)), "sourcedir.tar.gz")
