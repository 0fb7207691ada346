"""Runs a MultiWorkerMirroredStrategy cluster of local processes for the tests: free ports,
each worker's output in a log file (no pipe to fill), a deadline on every wait, kill on exit."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "multiworker_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(count):
    """Ports the OS has just handed out (bound together, so distinct; closed before use)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """The workers of one MultiWorkerMirroredStrategy cluster on localhost, one a port, each
    running ``command`` (default: ``multiworker_worker.py`` with ``args``)."""

    def __init__(self, ports, args, logs, command=None):
        self.ports, self.logs, self.workers = ports, logs, []
        self.command = command or [sys.executable, WORKER, *args]

    def start(self, run):
        workers = [f"localhost:{port}" for port in self.ports]
        for index in range(len(self.ports)):
            config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
            log = open(os.path.join(self.logs, f"run{run}-worker{index}.log"), "w")
            self.workers.append(subprocess.Popen(self.command, env=env,
                                                 stdout=log, stderr=subprocess.STDOUT))
            log.close()
        return self

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        for index, worker in enumerate(self.workers):
            try:
                code = worker.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {index} still running after {timeout} s\n" + self.tail())
            assert code == 0, f"worker {index} exited {code}\n" + self.tail()

    def kill(self):
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=30)

    def tail(self):
        text = ""
        for name in sorted(os.listdir(self.logs)):
            if name.endswith(".log"):
                with open(os.path.join(self.logs, name)) as f:
                    lines = [line for line in f if not line.startswith(("I0000", "WARNING: All log"))]
                text += f"--- {name}\n" + "".join(lines[-25:])
        return text
