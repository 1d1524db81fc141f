"""One run per folder: an OS advisory lock (``fcntl.flock``) on a file in the folder, held for the run's life.

The kernel releases the lock when its holder dies, ``kill -9`` included, so a lock is never stale: a file left by a
killed run is taken by the next. The file records its holder (pid, host, start time, command line) for the one-line
error a second run gets. On NFS, Linux emulates ``flock`` with POSIX locks, which the server sees across nodes.

Processes forked while the lock is held (DataLoader workers) close their copy of it at once: otherwise a killed run's
orphaned workers would keep its folder locked until they noticed (seconds later).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import weakref
from pathlib import Path
from typing import Optional, Union

from .io import ensure_writable_dir

PathLike = Union[str, Path]
LOCK_NAME = ".ca_stream.lock"
_HELD: "weakref.WeakSet[FolderLock]" = weakref.WeakSet()


class FolderInUseError(OSError):
    """Another live process holds the folder's lock (the message names the folder and the holder)."""


class FolderLock:
    """The lock of ``folder`` (``flag`` names it in errors); :meth:`acquire` creates the folder where needed, and
    :meth:`release` removes the folders it created if the run left nothing in them.

    Example::

        with FolderLock("runs/r18", "--store_dir"):
            ...  # a second FolderLock("runs/r18").acquire() raises FolderInUseError until the block ends
    """

    def __init__(self, folder: PathLike, flag: str = "--store_dir", enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.flag = flag
        self.enabled = enabled
        self.path = self.folder / LOCK_NAME
        self._fd: Optional[int] = None
        self._owner = 0
        self._created: list[Path] = []

    @property
    def held(self) -> bool:
        return self._fd is not None and self._owner == os.getpid()

    def acquire(self) -> FolderLock:
        """Takes the lock without waiting; FolderInUseError if a live process holds it. A lock not ``enabled`` (a
        DDP rank other than 0, whose rank 0 holds it) takes nothing."""
        if self.held or not self.enabled:
            return self
        missing = [parent for parent in (self.folder, *self.folder.parents) if not parent.exists()]
        ensure_writable_dir(self.folder, self.flag)
        self._created = missing
        try:
            self._fd = self._lock_current_file()
        except BaseException:
            self._remove_created_folders()
            raise
        self._owner = os.getpid()
        _HELD.add(self)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "argv": [sys.executable, *sys.argv]}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(record) + "\n").encode(), 0)
        return self

    def _lock_current_file(self) -> int:
        # a holder removes the file as it releases: a lock taken on a file that is no longer at the path (or is
        # another file now) guards nothing, so take the one that is there
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise FolderInUseError(f"{self.flag} {self.folder} is in use by another run ({self.holder()}); "
                                           f"wait for it to end or use another {self.flag}") from None
                raise OSError(f"{self.flag} {self.folder}: cannot lock {self.path}: {error.strerror}") from None
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def holder(self) -> str:
        """The holder, as its record in the lock file says."""
        try:
            record = json.loads(self.path.read_text())
            argv = " ".join(Path(record["argv"][0]).name if i == 0 else arg for i, arg in enumerate(record["argv"]))
            return f"pid {record['pid']} on {record['host']} since {record['started']}: {argv}"
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return f"its record in {self.path} is not readable yet"

    def release(self) -> None:
        """Releases the lock (a no-op if not held by this process) and removes the lock file, then the folders that
        :meth:`acquire` created if they are empty."""
        if not self.held:
            return
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        # removed while still locked, so no other process holds it meanwhile; a folder that turned read-only keeps
        # it, which is harmless: the lock is the open file, released as it closes
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        os.close(fd)
        self._remove_created_folders()

    def _remove_created_folders(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote something (or another process did)
                break
        self._created = []

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the kernel releases it anyway
            self.release()


def _close_in_child() -> None:
    """A forked child must not hold its parent's locks (flock locks belong to the open file, which fork shares)."""
    for lock in list(_HELD):
        if lock._fd is not None:
            os.close(lock._fd)
            lock._fd = None
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)
