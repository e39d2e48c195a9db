"""Checks of torchvision dataset files on disk: missing or corrupt, named by the exact path expected.

torchvision says "Dataset not found" both for a missing file and for a truncated one, and a bad IDX
header ends in an assertion deep inside it.  Here every expected file is looked at before torchvision
reads it: IDX files (MNIST, Fashion-MNIST) by header and exact size, CIFAR-10 batches by torchvision's
own md5 list.  A `.gz` next to a missing IDX file is unpacked (temp file + rename), as
`task.download=true` would do without a network.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import tempfile
import zlib
from functools import lru_cache
from pathlib import Path

_IDX_NDIM = {"images": 3, "labels": 1}
_CHUNK = 1 << 20


def _idx_problem(f, expected_ndim: int) -> str | None:
    """None when the stream is a complete uint8 IDX file of `expected_ndim` dims, else what is wrong."""
    head = f.read(4)
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08:
        return "not an IDX file of bytes (bad magic number)"
    ndim = head[3]
    if ndim != expected_ndim:
        return f"{ndim} dimensions where {expected_ndim} are expected"
    dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        return "truncated header"
    dims = struct.unpack(f">{ndim}I", dims_raw)
    want = 1
    for d in dims:
        want *= d
    got = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        got += len(chunk)
        if got > want:
            break
    if got != want:
        return f"{'truncated' if got < want else 'too long'}: the header says {want} bytes of data"
    return None


@lru_cache(maxsize=64)
def _idx_file_problem(path: str, size: int, _mtime: float, expected_ndim: int, gz: bool) -> str | None:
    """(size and _mtime are the cache key only: a changed file is checked again)"""
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            return _idx_problem(f, expected_ndim)
    except (OSError, EOFError, zlib.error) as e:
        return f"unreadable ({e.__class__.__name__}: {' '.join(str(e).split())[:80]})"


def idx_problem(path: Path, expected_ndim: int, gz: bool = False) -> str | None:
    st = path.stat()
    return _idx_file_problem(str(path), st.st_size, st.st_mtime, expected_ndim, gz)


def _gunzip(gz: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with gzip.open(gz, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fix(download: bool) -> str:
    return ("delete it and rerun (task.download=true fetches it again)" if download else
            "replace it with a good copy, or delete it and run once online with task.download=true")


def check_idx_dataset(raw_dir: Path, names: list[str], download: bool, unpack: bool) -> str | None:
    """One line naming the first missing or corrupt file of an IDX dataset, or None when all are fine.

    Missing files are fine with `download` (torchvision fetches them).  With `unpack`, a good `.gz`
    next to a missing file is unpacked in place.
    """
    for name in names:
        path = raw_dir / name
        ndim = _IDX_NDIM["labels" if "labels" in name else "images"]
        gz = path.with_name(name + ".gz")
        if path.is_file():
            problem = idx_problem(path, ndim)
            if problem:
                return f"corrupt dataset file {path} ({problem}); {_fix(download)}"
            continue
        if gz.is_file() and not download:
            problem = idx_problem(gz, ndim, gz=True)
            if problem:
                return (f"corrupt dataset file {gz} ({problem}); {path} is expected unpacked, or a good .gz "
                        f"next to it; {_fix(False)}")
            if unpack:
                _gunzip(gz, path)
            continue
        if not download:
            return (f"dataset file not found: {path}; put the files there (torchvision layout) or run once "
                    f"online with task.download=true")
    return None


@lru_cache(maxsize=64)
def _md5_ok(path: str, size: int, _mtime: float, md5: str) -> bool:
    """(size and _mtime are the cache key only: a changed file is checked again)"""
    from torchvision.datasets import cifar       # its check_integrity, so tests can stand in for it
    return bool(cifar.check_integrity(path, md5))


def check_cifar_dataset(folder: Path, files: list[tuple[str, str]], download: bool) -> str | None:
    """Like check_idx_dataset for CIFAR-10's pickled batches, checked against torchvision's md5 list."""
    for name, md5 in files:
        path = folder / name
        if not path.is_file():
            if download:
                return None                      # torchvision downloads and unpacks the archive
            return (f"dataset file not found: {path}; put the files there (torchvision layout) or run once "
                    f"online with task.download=true")
        st = path.stat()
        if not _md5_ok(str(path), st.st_size, st.st_mtime, md5):
            return f"corrupt dataset file {path} (md5 differs from the official file); {_fix(download)}"
    return None


def check_torchvision_files(class_name: str, data_dir, download: bool, unpack: bool = False) -> str | None:
    """The first problem with torchvision dataset `class_name`'s files under `data_dir`, or None."""
    import torchvision
    cls = getattr(torchvision.datasets, class_name)
    root = Path(str(data_dir)).expanduser()
    if hasattr(cls, "train_list"):               # CIFAR-10: pickled batches in cls.base_folder
        files = [(n, m) for n, m in (*cls.train_list, *cls.test_list)] + [(cls.meta["filename"], cls.meta["md5"])]
        return check_cifar_dataset(root / cls.base_folder, files, download)
    names = [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]
    return check_idx_dataset(root / cls.__name__ / "raw", names, download, unpack)
