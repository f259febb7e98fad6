"""The store's backend: raw I/O of the files under one root, their atomic writes and their locks.

Every file the project keeps under ``OST_DATA_DIR`` (the candle partitions, the exchange-side gap
records, the quarantine; see :mod:`ost.store` for the layout) is read, written, moved and locked
through a :class:`Backend`; the ingestion ledger's own files (:mod:`ost.ledger`) go through a
:class:`LocalBackend` of the ledger's directory. A backend knows nothing of candles or gaps: it
moves bytes, and the store and the gap record sort, deduplicate and validate on top of it.

**One atomic write**, :meth:`Backend.replace`: the new content is written to a temp file, which
replaces the old file whole. On a local root (:class:`LocalBackend`) the temp file sits in the
file's own directory (``.part-<random>.tmp``: a leading dot and no ``.parquet`` suffix, so no
reader ever opens it), is flushed and fsynced, then ``os.replace``-d onto the file, and the
directory is fsynced; a crash at any instant leaves the old file or the new one, plus at worst a
stale temp file, which the next write into that directory removes. A directory made on the way
has its parent fsynced at once, or, for a batch of writes (a backfill's partitions), once at the
batch's end (:class:`DirectorySyncs`), before the batch is reported stored. On any other
filesystem the file is written locally and uploaded with one ``put``, which object stores apply
atomically.

**One lock** (:func:`hold_lock`, reached through :meth:`Backend.lock`): whoever changes a file
holds that file's lock for its whole read-modify-write. It is a ``filelock`` (``flock``) lock file
that the holder writes its PID into and that stays in place after release. A waiter waits a
bounded time; past ``announce_after`` it says so in one line naming the holder, and past
``timeout`` it raises :class:`~ost.errors.Locked` (:class:`~ost.errors.StreamLocked` for a
stream's files). Readers take no lock. A backend's lock files live under ``locks/`` of a local
root, and in ``$TMPDIR/ost-locks/<hash of the URL>/`` for any other root (``flock`` needs a local
file; such locks hold between the processes of one machine only).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Final

import filelock
import fsspec
from fsspec.implementations.local import LocalFileSystem

from ost.errors import BadInput, Locked, StoreError

__all__ = [
    "LOCKS_DIR",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "Backend",
    "DirectorySyncs",
    "LocalBackend",
    "hold_lock",
    "is_temp",
    "open_backend",
    "open_synced",
    "write_bytes_synced",
]

log = logging.getLogger(__name__)

TEMP_PREFIX: Final = ".part-"
TEMP_SUFFIX: Final = ".tmp"
#: The directory of a local root's lock files.
LOCKS_DIR: Final = "locks"
#: Under the temp directory: the lock files of the roots that are not local, one directory each.
REMOTE_LOCKS_DIR: Final = "ost-locks"
#: How much of a lock holder's command line a message quotes.
HOLDER_CHARS: Final = 120
#: The bytes of a lock file's PID line: any 32-bit PID, space-padded, and a newline.
PID_WIDTH: Final = 11


def open_backend(root: str) -> Backend:
    """The backend of ``root`` (``OST_DATA_DIR``): a local path, a ``file://`` or any fsspec URL.

    :class:`~ost.errors.BadInput` when its protocol is unknown or its package missing.
    """
    try:
        fs, path = fsspec.core.url_to_fs(root)
    except (ImportError, ValueError) as exc:
        raise BadInput(f"OST_DATA_DIR {root!r} cannot be opened: {exc}") from None
    if isinstance(fs, LocalFileSystem):
        return LocalBackend(path, url=root)
    return Backend(root, fs, path)


class Backend:
    """Raw I/O under one root on an fsspec filesystem: bytes in and out, listings, locks.

    Paths are the filesystem's (``root`` joined with a path relative to it, see :meth:`path`).
    The public methods turn the filesystem's errors into :class:`~ost.errors.StoreError`; the
    ``_replace``, ``_move`` and ``_remove`` steps are what :class:`LocalBackend` does its own way.
    """

    #: Whether the root is a local directory (``os`` calls, fsync, ``flock`` beside the files).
    is_local: bool = False

    def __init__(self, url: str, fs: Any, root: str) -> None:
        #: The root as given (a path or URL), for messages and for readers that take a URL.
        self.url = url
        self.fs = fs
        #: The root as the filesystem's path.
        self.root = root
        #: The directories of lock files made (or found) so far.
        self._lock_dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def path(self, relative: str) -> str:
        """The filesystem path of ``relative``, a ``/``-separated path under the root."""
        return posixpath.join(self.root, relative)

    def url_of(self, path: str) -> str:
        """``path`` as a reader that speaks fsspec opens it: a local path, or a URL."""
        return str(self.fs.unstrip_protocol(path))

    # -- reading

    @contextlib.contextmanager
    def open_input(self, path: str) -> Iterator[IO[bytes]]:
        """``path`` open for reading, as bytes (FileNotFoundError if there is no such file)."""
        with self.fs.open(path, "rb") as handle:
            yield handle

    def read_bytes(self, path: str) -> bytes | None:
        """The whole content of ``path``, or None if there is no such file."""
        try:
            with self.open_input(path) as handle:
                return bytes(handle.read())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return bool(self.fs.exists(path))

    def list_names(self, directory: str) -> list[str]:
        """The names of the entries of ``directory``, sorted; none if it does not exist."""
        try:
            entries = self.fs.ls(directory, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(str(entry).rstrip("/")) for entry in entries)

    def list_files(self, directory: str) -> list[str]:
        """The names of the files (not directories) in ``directory``, sorted."""
        try:
            entries = self.fs.ls(directory, detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            posixpath.basename(str(entry["name"]).rstrip("/"))
            for entry in entries
            if entry.get("type") == "file"
        )

    def find(self, directory: str) -> list[str]:
        """Every file below ``directory`` (hidden ones too), as full paths, sorted."""
        try:
            return sorted(str(path) for path in self.fs.find(directory, withdirs=False))
        except FileNotFoundError:
            return []
        except OSError as exc:  # no permission, an I/O error
            raise StoreError(f"cannot list {directory}: {exc}") from exc

    # -- writing: the one atomic write, and moves

    def replace(self, path: str, write_temp: Callable[[str], None]) -> bool:
        """Replace ``path`` with the local file that ``write_temp(temp)`` writes and fsyncs.

        Readers see the old file or the new one, never a part of either. The caller holds the
        lock of ``path`` (a local backend removes the stale temp files of its directory).
        Whether the file's directory was made by this write (then it holds nothing else).
        """
        try:
            return self._replace(path, write_temp)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc

    def write_bytes(self, path: str, data: bytes, syncs: DirectorySyncs | None = None) -> bool:
        """Replace ``path`` with ``data`` atomically (:meth:`replace`); whether its dir is new.

        With ``syncs``, a directory this write makes is made durable by ``syncs.sync()``, which
        the caller runs before it reports the write done (:class:`DirectorySyncs`).
        """
        try:
            return self._write_bytes(path, data, syncs)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc

    def _write_bytes(self, path: str, data: bytes, syncs: DirectorySyncs | None) -> bool:
        del syncs  # an object store has no directory to fsync: its one PUT is the write
        return self._replace(path, lambda temp: write_bytes_synced(temp, data))

    def move(self, path: str, destination: str) -> None:
        """Move the file ``path`` to ``destination`` (a new name), creating its directories.

        On a local root it is one ``os.replace``, with both directories fsynced: a crash leaves
        the file at one of the two names. Elsewhere it is the filesystem's move (an object
        store's copy, then delete: a crash may leave it at both).
        """
        try:
            self._move(path, destination)
        except OSError as exc:
            raise StoreError(f"cannot move {path} to {destination}: {exc}") from exc

    def remove(self, path: str) -> None:
        """Remove the file ``path`` (gone already is fine)."""
        try:
            self._remove(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot remove {path}: {exc}") from exc

    def _replace(self, path: str, write_temp: Callable[[str], None]) -> bool:
        with tempfile.TemporaryDirectory(prefix="ost-store-") as scratch:
            temp = os.path.join(scratch, posixpath.basename(path))
            write_temp(temp)
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self.fs.put_file(temp, path)  # one PUT: object stores apply it atomically
        return False  # a prefix, not a directory: it may hold other objects

    def _move(self, path: str, destination: str) -> None:
        self.fs.makedirs(posixpath.dirname(destination), exist_ok=True)
        self.fs.mv(path, destination)

    def _remove(self, path: str) -> None:
        self.fs.rm_file(path)

    # -- locking: the one lock

    def lock(
        self,
        relative: str,
        what: str,
        *,
        timeout: float,
        announce_after: float | None = None,
        error: type[Locked] = Locked,
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the lock named ``relative`` (the store's are ``locks/...``) for the block.

        See :func:`hold_lock`; :meth:`lock_file` says where the lock file is.
        """
        lock_file = self.lock_file(relative)
        directory = os.path.dirname(lock_file)
        if directory not in self._lock_dirs:  # made once per process, not at every lock
            os.makedirs(directory, exist_ok=True)
            self._lock_dirs.add(directory)
        return hold_lock(
            lock_file, what, timeout=timeout, announce_after=announce_after, error=error
        )

    def lock_file(self, relative: str) -> str:
        """The local file of the lock named ``relative``: this machine's, as ``flock`` needs one.

        For a root that is not local, ``$TMPDIR/ost-locks/<hash of the URL>/`` stands in for
        its ``locks/`` directory.
        """
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        directory = os.path.join(tempfile.gettempdir(), REMOTE_LOCKS_DIR, key)
        return os.path.join(directory, relative.removeprefix(f"{LOCKS_DIR}/"))


class LocalBackend(Backend):
    """The backend of a local directory: ``os.replace`` with fsyncs, and its locks beside it."""

    is_local = True

    def __init__(self, root: str, *, url: str | None = None) -> None:
        local = LocalFileSystem()
        super().__init__(url if url is not None else root, local, local._strip_protocol(root))

    def url_of(self, path: str) -> str:
        """``path`` itself: every reader opens a local path."""
        return path

    @contextlib.contextmanager
    def open_input(self, path: str) -> Iterator[IO[bytes]]:
        """``path`` opened by the OS: fsspec's local file costs more than reading a footer."""
        with open(path, "rb") as handle:
            yield handle

    def lock_file(self, relative: str) -> str:
        """``relative`` under the root: the lock files sit with the files they guard."""
        return self.path(relative)

    def list_files(self, directory: str) -> list[str]:
        """The names of the files (not directories) in ``directory``, sorted (one ``scandir``)."""
        try:
            with os.scandir(directory) as entries:
                return sorted(entry.name for entry in entries if entry.is_file())
        except FileNotFoundError:
            return []

    def _replace(self, path: str, write_temp: Callable[[str], None]) -> bool:
        directory, made = self._temp_directory(path)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
        os.close(fd)
        self._commit(temp, path, lambda: write_temp(temp))
        return made

    def _write_bytes(self, path: str, data: bytes, syncs: DirectorySyncs | None) -> bool:
        """:meth:`_replace` with the bytes written through the temp file's own descriptor."""
        directory, made = self._temp_directory(path, syncs)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)

        def write() -> None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

        self._commit(temp, path, write)
        return made

    @staticmethod
    def _temp_directory(path: str, syncs: DirectorySyncs | None = None) -> tuple[str, bool]:
        """``path``'s directory, made durably or cleared of stale temps; whether it was made."""
        directory = os.path.dirname(path)
        made = _make_dirs_durably(directory, syncs)
        if not made:  # a directory just made holds no stale temp
            _remove_stale_temps(directory)
        return directory, made

    @staticmethod
    def _commit(temp: str, path: str, write: Callable[[], None]) -> None:
        """``write()`` the temp file (fsynced), move it onto ``path``, fsync the directory."""
        try:
            write()
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp)
            raise
        _fsync_dir(os.path.dirname(path))

    def _move(self, path: str, destination: str) -> None:
        _make_dirs_durably(os.path.dirname(destination))
        os.replace(path, destination)
        _fsync_dir(os.path.dirname(destination))
        _fsync_dir(os.path.dirname(path))

    def _remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        _fsync_dir(os.path.dirname(path))


def is_temp(name: str) -> bool:
    """Whether ``name`` is the name of a writer's temp file (see :meth:`Backend.replace`)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def write_bytes_synced(path: str, data: bytes) -> None:
    """Write ``data`` to the local file ``path``, flushed and fsynced."""
    with open_synced(path, "wb") as file:
        file.write(data)


@contextlib.contextmanager
def open_synced(path: str, mode: str) -> Iterator[IO[bytes]]:
    """Open the local file ``path``; on success, flush and fsync it before closing."""
    with open(path, mode) as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durably(directory: str, syncs: DirectorySyncs | None = None) -> bool:
    """Create ``directory`` and its missing parents, fsyncing each parent that gains an entry.

    With ``syncs``, each such parent is left to ``syncs.sync()`` instead. Whether this call
    created ``directory`` (False: it was there, or another writer made it).
    """
    parent = os.path.dirname(directory)
    sync = _fsync_dir if syncs is None else syncs.add
    try:
        os.mkdir(directory)  # first: a write into a directory that exists costs one syscall
    except FileExistsError:
        return False
    except FileNotFoundError:
        _make_dirs_durably(parent, syncs)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return False
        finally:
            sync(parent)
        return True
    sync(parent)
    return True


class DirectorySyncs:
    """The directories that a batch of writes gave new entries, fsynced once at its end.

    A backfill makes a partition directory a day: fsyncing their common parent once for the
    batch (:meth:`sync`) instead of once a directory saves one fsync of three per partition. A
    partition written in the batch is durable once :meth:`sync` returns; the writer calls it
    before it reports the batch stored (a crash before then may lose the batch's new
    directories, never a file that was stored before, and never leaves half a file). Safe to
    share between the batch's writer threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[str] = set()

    @property
    def pending(self) -> list[str]:
        """The directories still to fsync, sorted."""
        with self._lock:
            return sorted(self._pending)

    def add(self, directory: str) -> None:
        """Leave the fsync of ``directory`` to :meth:`sync`."""
        with self._lock:
            self._pending.add(directory)

    def sync(self) -> None:
        """Fsync every directory added since the last call, each once."""
        with self._lock:
            pending, self._pending = self._pending, set()
        for directory in sorted(pending):
            _fsync_dir(directory)


def _remove_stale_temps(directory: str) -> None:
    """Remove the temp files that a killed writer left (the caller holds the lock)."""
    for name in os.listdir(directory):
        if is_temp(name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))


# ---- the lock ----------------------------------------------------------------------------------


@contextlib.contextmanager
def hold_lock(
    lock_file: str,
    what: str,
    *,
    timeout: float,
    announce_after: float | None = None,
    error: type[Locked] = Locked,
) -> Iterator[None]:
    """Hold the lock file ``lock_file`` for the block: the project's one lock.

    The holder writes its PID into the file, which stays in place after release (a lock file
    removed on release could be locked by two processes at once). ``what`` waits for it (like
    ``BTCUSDT 1h``), at most ``timeout`` seconds (0: one try), then raises ``error``, naming
    the holder. A wait past ``announce_after`` seconds is announced in one warning line.
    """
    lock = filelock.FileLock(lock_file, on_acquired=_write_pid, preserve_lock_file=True)
    first_wait = timeout if announce_after is None else min(timeout, announce_after)
    try:
        lock.acquire(timeout=first_wait)
    except filelock.Timeout as exc:
        if first_wait >= timeout:
            raise _locked(error, lock_file, what, timeout) from exc
        log.warning(
            "%s: waiting for %s, held by %s; %s gives up after %g s",
            what,
            lock_file,
            _lock_holder(lock_file),
            error.waiter,
            timeout,
        )
        try:
            lock.acquire(timeout=timeout - first_wait)
        except filelock.Timeout as again:
            raise _locked(error, lock_file, what, timeout) from again
    try:
        yield
    finally:
        lock.release()


def _locked(error: type[Locked], lock_file: str, what: str, timeout: float) -> Locked:
    return error(
        f"{what}: {lock_file} was held by {_lock_holder(lock_file)} for over {timeout:g} s;"
        f" {error.outcome}"
    )


def _write_pid(fd: int) -> None:
    """Write this process's PID into the lock file it now holds (filelock's ``on_acquired``).

    Always ``PID_WIDTH`` bytes, so the file keeps its size and needs no truncation (a journaled
    change of the file's size at every lock) once it has held one.
    """
    os.pwrite(fd, f"{os.getpid():<{PID_WIDTH - 1}}\n".encode(), 0)
    if os.fstat(fd).st_size > PID_WIDTH:  # written otherwise before: cut what follows
        os.ftruncate(fd, PID_WIDTH)


def _lock_holder(lock_file: str) -> str:
    """Who holds ``lock_file``, as its PID written in it says: ``PID 1234 (its command)``."""
    try:
        text = Path(lock_file).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        text = ""
    if not text.isdigit():
        return "a process that wrote no PID in it"
    try:
        command = Path(f"/proc/{text}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:  # no /proc (not Linux), or the process is gone
        return f"PID {text}"
    shown = command.decode(errors="replace")
    return f"PID {text} ({shown[:HOLDER_CHARS]})" if shown else f"PID {text}"
