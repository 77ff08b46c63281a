"""Atomic outputs (a killed job never leaves a file that looks complete), and the per-image CSVs
read and written with pandas."""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import multiprocessing.pool
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import pandas as pd
from tqdm import tqdm

from xiqa.errors import InputError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name starts with a dot and carries the writer's process id, so a half-written
    output never sits at the real path; on any exception (or KeyboardInterrupt) it is removed, and
    the temporaries of a writer that was killed (``kill -9``, a node lost) are removed by the next
    writer of the same path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    prefix, suffix = f".{path.name}.{os.getpid()}.", ".tmp"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
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
        _remove(tmp)
        raise


@contextlib.contextmanager
def staged_outputs(root: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder standing for ``root``: what the block writes under it moves to
    the same place under ``root`` only if the block succeeds, so a command with many outputs
    either writes them all or leaves ``root`` as it was (not even created)."""
    root = Path(root)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root / "staged")
    stage = Path(tempfile.mkdtemp(prefix=f".staged.{os.getpid()}.", suffix=".tmp", dir=root))
    try:
        yield stage
        for file in sorted(p for p in stage.rglob("*") if p.is_file()):
            target = root / file.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` whose writer process no longer runs on this machine.
    Returns what was removed."""
    stale = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            _remove(tmp)
            stale.append(tmp)
    return stale


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


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


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, na_rep: str = "") -> None:
    """``frame`` as a UTF-8 CSV without its index, lines ending in \\n, written atomically;
    missing values as ``na_rep``."""
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8", na_rep=na_rep)


def read_csv(path: str | os.PathLike, what: str) -> pd.DataFrame:
    """Every cell of a CSV as text, empty cells as ""; '{path}: {what} not found' when there is
    no file, and one line for a file that is no CSV."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None


def read_results_csv(
    path: str | os.PathLike, what: str, columns: Sequence[str], rerun: str
) -> pd.DataFrame:
    """:func:`read_csv` of a per-image results CSV that must hold ``columns``; one lacking any
    is refused as written by another xiqa version, asking to ``rerun`` its command."""
    frame = read_csv(path, what)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: not a {what.removesuffix(' results')} CSV of this xiqa version (no column "
            f"{', '.join(missing)}); rerun {rerun}"
        )
    return frame


def numeric_columns(
    frame: pd.DataFrame,
    columns: Sequence[str],
    path: str | os.PathLike,
    error: str,
    optional: Sequence[str] = (),
) -> pd.DataFrame:
    """``columns`` of a :func:`read_csv` frame as numbers, empty cells of ``optional`` columns
    as NaN; any other cell that is no number is '{path}: line N: {error}'."""
    numbers = frame[list(columns)].apply(pd.to_numeric, errors="coerce")
    empty = frame[list(columns)] == ""
    bad = numbers.isna() & ~(empty & numbers.columns.isin(list(optional)))
    rows = bad.index[bad.any(axis=1)]  # read_csv's labels: 0 is the row below the header
    if len(rows):
        raise InputError(f"{path}: line {rows[0] + 2}: {error}")
    return numbers
