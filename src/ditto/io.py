"""Atomic file writes: a reader (or a crash, or Ctrl-C) never sees a half-written file.

Each write goes to a temporary file in the same directory, is flushed to disk,
then renamed over the target (rename is atomic on POSIX file systems). A write that
fails (a full disk) leaves the previous file as it was.

Checksums: a dataset's metadata.json and a run's config.json keep the sha256 of the
files beside them under "checksums" (paths relative to the JSON file's directory), so
that `ditto dataset verify` and `ditto run verify` can tell a changed or missing file.

And one writer per directory: `writer_lock(out)` holds an output directory for the
process that writes it (a training run, a collection, a sweep).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from ditto.errors import DittoError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; directories are not guarded there
    fcntl = None

LOCK = ".ditto.lock"
CHECKSUMS = "checksums"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = (
    0o666 & ~_umask()
)  # what open() would give; mkstemp's 0600 would hide files from others


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` atomically: `write(f)` fills a temporary file that then replaces it."""
    path = Path(path)
    try:
        _atomic_write(path, write)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # say what happened to the files, once
            raise DittoError(
                f"no space left on the device to write {path}; nothing was replaced, so the "
                "last good state is kept: free some space, then run the command again "
                "(a training run with --resume)"
            ) from None
        raise


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def holds_files(directory: Path) -> bool:
    """Whether `directory` holds anything but the temporary files of interrupted atomic writes
    (a kill during the first write into a new directory leaves one behind) and a writer's lock
    file (a killed writer leaves it)."""
    return any(
        not (p.name.startswith(".") and p.name.endswith(".tmp")) and p.name != LOCK
        for p in directory.iterdir()
    )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def check_directory_path(directory: Path) -> None:
    """Refuse an --out whose path holds a file where a directory should be, naming it (making
    the directory would fail with only "[Errno 20] Not a directory")."""
    if directory.exists() and not directory.is_dir():
        raise DittoError(f"{directory} is a file; choose a directory for --out")
    blocking = next((p for p in directory.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise DittoError(
            f"{blocking} is a file, so --out {directory} cannot be made; choose another"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_problem(path: Path, recorded: str | list[str | None] | None) -> str | None:
    """What is wrong with `path` against its `recorded` checksum (a list while a write was
    under way: any of them, None meaning absent), or None if it matches."""
    if recorded is None:
        return f"{path}: no checksum recorded (written by an older ditto, or not by ditto)"
    accepted = recorded if isinstance(recorded, list) else [recorded]
    if not path.is_file():
        return None if None in accepted else f"{path}: missing"
    if sha256_file(path) not in accepted:
        return f"{path}: changed since it was written (its sha256 is not the recorded one)"
    return None


def recorded_checksums(manifest: Path) -> dict[str, Any]:
    """The checksums the JSON file `manifest` records ({} if none, or if it is unreadable)."""
    try:
        data = json.loads(Path(manifest).read_text())
    except (OSError, ValueError):
        return {}
    found = data.get(CHECKSUMS) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else {}


def _record(manifest: Path, name: str, value: Any) -> None:
    """Set (or, with None, drop) the checksum of `name` in `manifest`, atomically."""
    data = json.loads(manifest.read_text())
    checksums = dict(data.get(CHECKSUMS) or {})
    if value is None:
        checksums.pop(name, None)
    else:
        checksums[name] = value
    atomic_write_json(manifest, {**data, CHECKSUMS: checksums})


def atomic_write_recorded(path: Path, data: bytes, manifest: Path) -> None:
    """Write `path` atomically and keep its sha256 in the JSON file `manifest`.

    Whenever the writer dies (a kill, a full disk), the file on disk matches a recorded
    checksum: the new one is recorded beside the old before the rename, alone after it.
    """
    path, manifest = Path(path), Path(manifest)
    name = path.relative_to(manifest.parent).as_posix()
    before = recorded_checksums(manifest).get(name)  # None: there was no file
    accepted = before if isinstance(before, list) else [before]
    digest = hashlib.sha256(data).hexdigest()
    _record(manifest, name, [*(d for d in accepted if d != digest), digest])
    atomic_write_bytes(path, data)
    _record(manifest, name, digest)


def remove_recorded(path: Path, manifest: Path) -> None:
    """Delete `path` and its checksum; meanwhile the record accepts the file or its absence,
    so that a kill at any moment leaves neither an unrecorded file nor a missing one."""
    path, manifest = Path(path), Path(manifest)
    name = path.relative_to(manifest.parent).as_posix()
    before = recorded_checksums(manifest).get(name)
    _record(manifest, name, [*(before if isinstance(before, list) else [before]), None])
    path.unlink(missing_ok=True)
    _record(manifest, name, None)


@contextmanager
def writer_lock(directory: str | os.PathLike) -> Iterator[None]:
    """Hold `directory` for this process's writes: a second writer given the same directory
    is refused at once (DittoError) instead of interleaving its files with ours.

    The lock is an flock on DIRECTORY/.ditto.lock, which the kernel drops when the process
    ends however it ends, so a killed writer never leaves the directory locked. The lock file
    is removed on the way out, and so are the directories made here if they are left empty
    (the writer failed before writing), so that a refused command leaves nothing behind.
    """
    directory = Path(directory)
    check_directory_path(directory)
    made = [p for p in (directory, *directory.parents) if not p.exists()]  # deepest first
    fd = _lock(directory)
    try:
        yield
    finally:
        if fd is not None:
            try:
                # Unlinked while still held: a process waiting on this file finds it gone
                # and locks a new one (see _lock), so two writers never both hold `directory`.
                (directory / LOCK).unlink(missing_ok=True)
            finally:
                os.close(fd)
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # it holds the run's files (or another writer's lock): keep it
                break


def _lock(directory: Path) -> int | None:
    """An open descriptor of DIRECTORY/.ditto.lock that holds the flock, or None where the
    system or the file system has no locks (the directory is then written unguarded)."""
    path = directory / LOCK
    while True:
        directory.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except FileNotFoundError:  # the last holder removed the directory just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            by = f"process {holder}" if holder.isdigit() else "another process"
            raise DittoError(
                f"{directory} is being written by {by}; wait for it to finish or choose "
                "another --out"
            ) from None
        except OSError:  # a file system without flock (some network or FUSE mounts)
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for the refusal
            return fd
        os.close(fd)  # its holder removed this file after we opened it: lock the new one
