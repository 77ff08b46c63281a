"""Atomic outputs: a killed job never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py
from tqdm import tqdm

from xiqa.errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name starts with a dot, so a half-written output never sits at the real path,
    and on any exception (or KeyboardInterrupt) it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create private (0600/0700) entries; give the output normal permissions.
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def progress_bar(**kwargs) -> tqdm:
    """A progress bar on stderr, shown only when stderr is a terminal (quiet in job logs)."""
    return tqdm(disable=None, leave=False, file=sys.stderr, **kwargs)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """A pool of ``workers`` fresh (spawned) processes, or ``None`` to work in this process.

    Spawned rather than forked: a forked child would inherit open HDF5 handles and threads.
    """
    if workers <= 1:
        yield None
        return
    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def open_hdf5(path: str | os.PathLike, what: str) -> h5py.File:
    """Open an HDF5 file for reading; missing or not HDF5 is an InputError naming ``what``."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 {what} ({exc})") from None
