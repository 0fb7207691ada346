"""Directories that appear whole or not at all."""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_directory(target):
    """Build a directory in a hidden temporary one beside ``target``; on success rename it to
    ``target`` (one ``os.rename``: a reader polling the parent never sees it half-written),
    on any failure, Ctrl-C included, remove it.

    Example:
        >>> with atomic_directory("serving/model/3") as work:
        ...     write_everything_into(work)
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.tmp-", dir=parent)
    try:
        yield work
        if os.path.isdir(target) and not os.listdir(target):
            os.rmdir(target)  # an empty directory the caller allowed us to replace
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
