"""Deployment faults of export_savedmodel / export_onnx (issue 14, item 4): versions readable by
a server running as another user, the leftovers of a killed export removed by the next one,
and a second export into the same directory refused at once while the first runs."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from keras_transformers.export import ExportInProgressError, export_onnx, export_savedmodel
from tests.export.models import build
from tests.export.readable import assert_world_readable, modes

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# An export that stops inside its temporary directory, the SavedModel written, and waits to
# be killed: the moment a crash, an OOM kill or a second export can meet it.
_STALLED_EXPORT = textwrap.dedent("""
    import os, sys, time
    import keras_transformers.export.savedmodel as savedmodel
    from tests.export.models import build

    export_dir, ready = sys.argv[1], sys.argv[2]
    real = savedmodel.write_warmup_requests

    def stall(work, *args, **kwargs):
        real(work, *args, **kwargs)
        with open(ready, "w") as f:
            f.write(work)
        time.sleep(600)

    savedmodel.write_warmup_requests = stall
    savedmodel.export_savedmodel(build("classifier"), export_dir, verify=False)
""")


def test_savedmodel_versions_are_readable_by_any_user(exported):
    _, path = exported("classifier")
    assert_world_readable(os.path.dirname(path))  # export_dir (made by the export) and version 1


@pytest.fixture
def stalled_export(tmp_path):
    """``(process, export_dir, temporary directory)`` of an export stopped mid-write; killed
    at the end of the test whatever happens."""
    export_dir, ready = tmp_path / "serving", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPOSITORY, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", _STALLED_EXPORT, str(export_dir), str(ready)],
                               cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (ready.exists() and ready.read_text()):
            if process.poll() is not None:
                pytest.fail(f"the export to stall exited with {process.returncode}: "
                            f"{process.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the export to stall did not reach its temporary directory in 240 s")
            time.sleep(0.2)
        yield process, export_dir, ready.read_text()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        process.stderr.close()


@pytest.mark.timeout(400)
def test_a_concurrent_export_fails_at_once_and_a_killed_ones_leftovers_are_removed(stalled_export):
    process, export_dir, work = stalled_export
    name = os.path.basename(work)
    assert name.startswith(".1.tmp-") and os.path.exists(os.path.join(work, "saved_model.pb"))
    model = build("classifier")

    # A second export while the first runs: refused before it computes anything.
    start = time.monotonic()
    with pytest.raises(ExportInProgressError, match=rf"Another export into {export_dir} is running "
                                                    rf"\(process {process.pid} holds .*\.export\.lock\)"):
        export_savedmodel(model, export_dir, verify=False)
    assert time.monotonic() - start < 5
    assert sorted(os.listdir(export_dir)) == sorted([".export.lock", name])  # the first one's, untouched

    # SIGKILL mid-write: nothing can clean up; the temporary directory and the lock file stay.
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert sorted(os.listdir(export_dir)) == sorted([".export.lock", name])

    # The next export, under a private umask, takes the lock over, removes the leftover and
    # writes a complete version readable by anyone.
    umask = os.umask(0o077)
    try:
        path = export_savedmodel(model, export_dir, verify=False)
    finally:
        os.umask(umask)
    assert path == os.path.join(export_dir, "1")
    assert os.listdir(export_dir) == ["1"]
    assert set(modes(export_dir).values()) == {0o755, 0o644}
    for part in ("saved_model.pb", "variables/variables.index", "assets/export.json",
                 "assets.extra/tf_serving_warmup_requests"):
        assert os.path.exists(os.path.join(path, part)), part
    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures) == ["predict_ids", "serving_default"]


@pytest.mark.timeout(120)
def test_export_onnx_into_a_locked_path_fails_at_once(tmp_path):
    # The lock of another process (here a bare one: the export path is the same code as above).
    lock = tmp_path / ".out.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, str(os.getpid()).encode())
        print("locked", flush=True)
        time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExportInProgressError, match=rf"Another export into {tmp_path / 'out'} is running "
                                                        rf"\(process {holder.pid} holds"):
            export_onnx(build("classifier"), tmp_path / "out", verify=False)
        assert sorted(os.listdir(tmp_path)) == [".out.lock"]
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()


# export_onnx's leftovers of a killed export and its modes: tests/export/test_onnx.py (its fixture).
