"""Directories that appear whole or not at all, readable by any user, one writer at a time.

Three faults of a deployment directory, and what this module does about each:

* A server runs as another user than the one who exported: every directory an export writes
  is made mode ``0755`` and every file ``0644`` (what ``tf.saved_model.save`` itself writes),
  whatever the umask; ``tempfile.mkdtemp`` alone would leave the version ``0700``.
* An export killed mid-write (``SIGKILL``, out of memory, a lost machine) cannot clean up its
  hidden temporary directory; the next export into the same place removes it, under the lock.
* Two exports into one place at once: an advisory lock (``fcntl.flock`` on a hidden lock file)
  makes the second fail at once with :class:`ExportInProgressError`, naming the directory and
  the process that holds it, before it computes anything. We fail rather than wait: an export
  takes seconds to minutes, and a version number chosen after waiting would surprise whoever
  started the second one. The kernel drops the lock when its process dies, so a killed export
  never blocks the next one.
"""

import contextlib
import errno
import os
import re
import shutil
import tempfile

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows: exports there are not locked)
    fcntl = None

DIRECTORY_MODE = 0o755
FILE_MODE = 0o644
TEMPORARY_MARK = ".tmp-"


class ExportInProgressError(RuntimeError):
    """Another export holds the lock of the directory this one would write into."""


def temporary_prefix(target):
    """The name prefix of ``target``'s hidden temporary directories: ``.<name>.tmp-``."""
    return f".{os.path.basename(os.path.abspath(target))}{TEMPORARY_MARK}"


def make_readable(root):
    """Give ``root`` and everything under it modes ``0755`` (directories) and ``0644`` (files),
    so a server running as any user can read it. Links are left alone."""
    os.chmod(root, DIRECTORY_MODE)
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, DIRECTORY_MODE)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)


def makedirs_readable(path):
    """``os.makedirs(path, exist_ok=True)``, with the directories it creates mode ``0755``
    (``makedirs`` alone applies the umask; an umask of 077 would hide the export)."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            continue  # made concurrently by someone else: theirs to keep as it is
        os.chmod(directory, DIRECTORY_MODE)


def remove_stale_temporaries(parent, pattern):
    """Remove the hidden temporary directories in ``parent`` whose names match the regular
    expression ``pattern`` (left by exports that were killed). Call it only while holding
    :func:`export_lock` of ``parent``'s writers, so that none of them is still in use.

    Returns the names removed."""
    removed = []
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name)
        if re.fullmatch(pattern, name) and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


@contextlib.contextmanager
def export_lock(lock_path, what):
    """Hold an exclusive advisory lock on ``lock_path`` (created, and removed on exit) for
    the whole export; raise :class:`ExportInProgressError` at once when another process holds it.

    ``what`` names the locked place in the error message. The file holds the owner's process
    id, for that message. A lock file left by a killed process is taken over (``flock`` locks
    die with their process); removing the file on exit is safe because a process that locked
    a file that is no longer at ``lock_path`` retries on the new one. (Without ``fcntl``, on
    Windows, nothing is locked.)
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise ExportInProgressError(
                f"Another export into {what} is running ({_owner(lock_path)} holds {lock_path}); "
                "two exports into one directory at once are refused. Wait for it to finish, or export "
                "into another directory.") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous owner removed the file between our open and our lock
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _owner(lock_path):
    try:
        with open(lock_path) as file:
            pid = file.read().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def atomic_directory(target):
    """Build a directory in a hidden temporary one beside ``target``; on success make it
    readable by any user (:func:`make_readable`) and rename it to ``target`` (one
    ``os.rename``: a reader polling the parent never sees it half-written); on any failure,
    Ctrl-C included, remove it. (A ``SIGKILL`` cannot be caught: callers remove such leftovers
    with :func:`remove_stale_temporaries`, under :func:`export_lock`.)

    Example:
        >>> with atomic_directory("serving/model/3") as work:
        ...     write_everything_into(work)
    """
    parent = os.path.dirname(os.path.abspath(target))
    makedirs_readable(parent)
    work = tempfile.mkdtemp(prefix=temporary_prefix(target), dir=parent)
    try:
        yield work
        make_readable(work)
        if os.path.isdir(target) and not os.listdir(target):
            os.rmdir(target)  # an empty directory the caller allowed us to replace
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
