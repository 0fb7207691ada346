"""Checks that an export directory is readable by a server running as another user."""

import os
import pwd
import stat
import subprocess
import sys

import pytest

# Run as nobody: reopen the directory from an inherited descriptor (the tests' temporary
# directories above it are private to root, as pytest makes them), walk it, read every byte.
_READ_ALL = r"""
import os, sys
count = 0
def walk(fd, where):
    global count
    for entry in os.scandir(fd):
        path = os.path.join(where, entry.name)
        try:
            if entry.is_dir(follow_symlinks=False):
                child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                walk(child, path)
                os.close(child)
            else:
                with os.fdopen(os.open(entry.name, os.O_RDONLY, dir_fd=fd), "rb") as f:
                    f.read()
                count += 1
        except PermissionError as error:
            sys.exit(f"uid {os.getuid()} cannot read {path}: {error}")
# Reopening through /proc checks the directory's own mode for this user, not its ancestors'.
walk(os.open(f"/proc/self/fd/{sys.argv[1]}", os.O_RDONLY | os.O_DIRECTORY), sys.argv[2])
print(count)
"""


def _runs_as(python, user):
    try:
        return subprocess.run([python, "-I", "-S", "-c", ""], user=user.pw_uid, group=user.pw_gid,
                              extra_groups=[], cwd="/", capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def modes(root):
    """``{relative path: mode bits}`` of ``root`` and everything under it."""
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def assert_world_readable(root):
    """Every directory under ``root`` is 0755 and every file 0644; as root, also read the
    whole tree as the user ``nobody`` (skipped when not root or without that user)."""
    found = modes(root)
    wrong = {path: oct(mode) for path, mode in found.items()
             if mode != (0o755 if os.path.isdir(os.path.join(root, path)) else 0o644)}
    assert not wrong, f"modes other than 0755 (directories) / 0644 (files): {wrong}"
    if os.geteuid() != 0:
        pytest.skip("reading the export as another user needs root (modes checked)")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' (modes checked)")
    # An interpreter nobody may run: this one may live under root's home (pyenv).
    python = next((p for p in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
                   if _runs_as(p, nobody)), None)
    if python is None:
        pytest.skip("no Python interpreter the user 'nobody' may run (modes checked)")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = subprocess.run([python, "-I", "-S", "-c", _READ_ALL, str(fd), os.path.basename(root)],
                                pass_fds=[fd],
                                user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], cwd="/",
                                capture_output=True, text=True, timeout=60)
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    files = sum(1 for path in found if not os.path.isdir(os.path.join(root, path)))
    assert int(result.stdout) == files
