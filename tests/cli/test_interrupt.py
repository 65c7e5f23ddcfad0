"""Ctrl-C during a long command: one line `interrupted` on stderr, exit code 130, no traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc to see torch loaded")


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def test_ctrl_c_during_a_long_bench_prints_one_line_and_exits_130():
    args = ["bench", "configs/resnet18.yaml", "--device", "cpu", "--min-time", "600", "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "netcfg", *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while _rss_mib(process.pid) < 300 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # torch imported and the model being built: well inside the command
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    assert stderr.decode() == "interrupted\n"
    assert stdout == b""
