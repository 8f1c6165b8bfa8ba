"""Issue 11.4: a crash of ``veilcam run`` or ``veilcam mask`` leaves no core file, whatever the
shell's ``ulimit -c`` (a core holds the raw frames waiting to be masked).

Each test starts the real command with ``RLIMIT_CORE`` unlimited (as ``ulimit -c unlimited``
would), in a folder where the kernel writes cores (``core_pattern`` ``core``), crashes it with
SIGSEGV while it handles frames, and looks for the core. The second crash first tries to raise
the limit again from outside (``prlimit``): ``PR_SET_DUMPABLE`` 0 makes the kernel refuse that,
and would stop the core if it were allowed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests._live import wait_for

REPO = Path(__file__).resolve().parent.parent
CLIP = ("videos", "intel_one-by-one-person-detection.mp4")  # 139 s: still running when crashed
UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)

pytestmark = pytest.mark.skipif(
    Path("/proc/sys/kernel/core_pattern").read_text().strip() != "core",
    reason="needs core_pattern 'core' to see a core file (CI's machine has it)",
)


def unlimited_cores() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, UNLIMITED)


def core_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4]  # the soft limit: the one the kernel applies
    raise AssertionError("no core limit line")


def crash(cmd: list[str], cwd: Path, ready: Path, raise_limit: bool) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NOTIFY_SOCKET", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "daemon", *cmd],
        cwd=cwd,
        env=env,
        preexec_fn=unlimited_cores,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: ready.exists() and ready.stat().st_size > 0, 120, "frames handled")
        assert core_limit(p.pid) == "0"
        if raise_limit:
            # the kernel refuses it for a non-dumpable process here; no core either way
            with contextlib.suppress(PermissionError):
                resource.prlimit(p.pid, resource.RLIMIT_CORE, UNLIMITED)
        p.send_signal(signal.SIGSEGV)
        assert p.wait(60) == -signal.SIGSEGV
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return sorted(f.name for f in cwd.iterdir() if f.name.startswith("core"))


@pytest.mark.parametrize("raise_limit", [False, True], ids=["ulimit", "prlimit-after-start"])
def test_a_crashed_service_leaves_no_core(tmp_path: Path, data_dir: Path, raise_limit) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"camera:\n  source: {data_dir.joinpath(*CLIP)}\nrecording:\n  path: {tmp_path / 'rec'}\n"
        "  min_free_percent: 0\nmqtt:\n  enabled: false\n"
    )
    regions = tmp_path / "r.jsonl"
    cmd = ["run", "--config", str(cfg), "--regions", str(regions)]
    assert crash(cmd, tmp_path, regions, raise_limit) == []


def test_a_crashed_mask_command_leaves_no_core(tmp_path: Path, data_dir: Path) -> None:
    regions = tmp_path / "r.jsonl"
    src = str(data_dir.joinpath(*CLIP))
    cmd = ["mask", src, "--output", str(tmp_path / "out"), "--regions", str(regions), "-q"]
    assert crash(cmd, tmp_path, regions, raise_limit=True) == []
