"""deploy/install.sh and uninstall.sh, run for real into a staging root (``--root``).

The staging root gets its own /etc/passwd and /etc/group, so the veilcam user is created there
and nowhere else; no apt, no systemctl. Installing twice must give the same tree, an edited
config must survive, and uninstall must keep recordings and config unless asked to purge.
It installs as on a Raspberry Pi (``--platform pi``) with Debian's own Python 3.11, whose
python3-numpy (1.24, as on Bookworm) and python3-systemd the venv must use rather than replace.
Needs root (chown, useradd --prefix), those apt packages (scripts/setup.sh) and PyPI (or pip's
cache) for the venv.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "deploy" / "install.sh"
SYSTEM_PY = "/usr/bin/python3"
PI = ("--platform", "pi", "--python", SYSTEM_PY)
UNINSTALL = REPO / "deploy" / "uninstall.sh"


def make_root(root: Path) -> Path:
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\nvideo:x:44:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\nvideo:!::\n")
    for f in ("shadow", "gshadow"):
        (etc / f).chmod(0o640)
    return root


def run(script: Path, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", str(script), "--root", str(root), *extra],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return proc


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner and content (bytecode caches left out)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                content = None
            out[rel] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, content)
    return out


def ids(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return int(f[2]), int(f[3])
    raise AssertionError(f"no user {name} in {root}/etc/passwd")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict, dict]]:
    if os.geteuid() != 0:
        pytest.fail("install.sh tests need root (CI runs as root)")
    apt = subprocess.run(
        [SYSTEM_PY, "-c", "import numpy, systemd.daemon"], capture_output=True, check=False
    )
    if apt.returncode != 0:
        pytest.fail("apt packages python3-numpy and python3-systemd missing (scripts/setup.sh)")
    root = make_root(tmp_path_factory.mktemp("stage") / "root")
    first = run(INSTALL, root, *PI)
    assert first.returncode == 0, first.stdout + first.stderr
    snap1 = snapshot(root)
    second = run(INSTALL, root, *PI)
    assert second.returncode == 0, second.stdout + second.stderr
    yield root, snap1, snapshot(root)


@pytest.mark.slow
def test_second_install_gives_the_same_tree(installed: tuple[Path, dict, dict]) -> None:
    _, snap1, snap2 = installed
    assert snap1.keys() == snap2.keys()
    changed = {k: (snap1[k], snap2[k]) for k in snap1 if snap1[k] != snap2[k]}
    assert changed == {}


@pytest.mark.slow
def test_layout_user_and_permissions(installed: tuple[Path, dict, dict]) -> None:
    root, _, _ = installed
    uid, gid = ids(root, "veilcam")
    assert uid < 1000  # a system user
    video = next(
        ln for ln in (root / "etc/group").read_text().splitlines() if ln.startswith("video:")
    )
    assert "veilcam" in video.split(":")[3].split(",")
    passwd = next(ln for ln in (root / "etc/passwd").read_text().splitlines() if "veilcam" in ln)
    assert passwd.endswith(":/var/lib/veilcam:/usr/sbin/nologin")

    config = root / "etc/veilcam/config.yaml"
    st = config.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, gid)
    assert config.read_text() == (REPO / "config.yaml").read_text()
    for d in ("var/lib/veilcam", "var/lib/veilcam/recordings"):
        st = (root / d).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, uid, gid), d

    units = root / "etc/systemd/system"
    for unit in ("veilcam.service", "veilcam-firewall.service"):
        assert (units / unit).read_text() == (REPO / "systemd" / unit).read_text()
    dropin = (units / "veilcam.service.d/50-network.conf").read_text()
    assert "IPAddressAllow=127.0.0.1" in dropin.splitlines()  # the default broker
    ruleset = (root / "etc/veilcam/firewall.nft").read_text()
    assert "127.0.0.1 . 1883" in ruleset
    assert (root / "opt/veilcam/share/nftables.conf").read_text() == (
        REPO / "deploy/nftables.conf"
    ).read_text()
    assert os.readlink(root / "usr/local/bin/veilcam") == "/opt/veilcam/venv/bin/veilcam"
    models = root / "opt/veilcam/models"
    repo_models = sorted(p.name for p in (REPO / "models").glob("*.tflite"))
    assert sorted(p.name for p in models.glob("*.tflite")) == repo_models
    assert not list(models.rglob("*.py")) and not list(models.glob(".*"))  # no converter

    # the venv runs the installed package, with apt's numpy (what picamera2 was built against)
    # and apt's systemd binding (not rebuilt from the sdist)
    py = root / "opt/veilcam/venv/bin/python"
    code = (
        "import daemon, daemon.netpolicy, numpy, systemd.daemon, cv2, av;"
        "print(daemon.__file__); print(numpy.__file__); print(systemd.daemon.__file__)"
    )
    probe = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd="/")
    assert probe.returncode == 0, probe.stderr
    pkg, numpy_file, systemd_file = probe.stdout.split()
    assert pkg.startswith(str(root / "opt/veilcam/venv"))
    assert numpy_file.startswith("/usr/lib/python3/dist-packages/")
    assert systemd_file.startswith("/usr/lib/python3/dist-packages/")


@pytest.mark.slow
def test_edited_config_survives_and_uninstall_keeps_data_unless_purged(
    installed: tuple[Path, dict, dict],
) -> None:
    root, _, _ = installed
    config = root / "etc/veilcam/config.yaml"
    edited = config.read_text().replace("host: 127.0.0.1", "host: 192.0.2.77", 1)
    assert edited != config.read_text()
    config.write_text(edited)
    proc = run(INSTALL, root, *PI)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert config.read_text() == edited
    assert (root / "opt/veilcam/share/config.yaml").read_text() == (
        REPO / "config.yaml"
    ).read_text()
    assert not (root / "etc/veilcam/config.yaml.dist").exists()
    dropin = (root / "etc/systemd/system/veilcam.service.d/50-network.conf").read_text()
    assert "IPAddressAllow=192.0.2.77" in dropin.splitlines()
    assert "IPAddressAllow=127.0.0.1" not in dropin.splitlines()

    clip = root / "var/lib/veilcam/recordings/camera/2025-01-01/seg.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"masked video")
    proc = run(UNINSTALL, root)
    assert proc.returncode == 0, proc.stderr
    for gone in (
        "opt/veilcam",
        "etc/systemd/system/veilcam.service",
        "etc/systemd/system/veilcam.service.d",
        "etc/systemd/system/veilcam-firewall.service",
        "etc/veilcam/firewall.nft",
        "usr/local/bin/veilcam",
    ):
        assert not (root / gone).exists(), gone
    assert clip.read_bytes() == b"masked video"
    assert config.read_text() == edited
    ids(root, "veilcam")  # still owns the recordings

    proc = run(UNINSTALL, root, "--purge")
    assert proc.returncode == 0, proc.stderr
    assert not (root / "var/lib/veilcam").exists()
    assert not (root / "etc/veilcam").exists()
    assert "veilcam" not in (root / "etc/passwd").read_text()
    assert "veilcam" not in (root / "etc/group").read_text()


@pytest.mark.slow
def test_jetson_install_builds_its_own_venv(tmp_path: Path) -> None:
    """Off the Pi the venv ignores apt's modules and systemd-python is built from its sdist."""
    if os.geteuid() != 0:
        pytest.fail("install.sh tests need root (CI runs as root)")
    root = make_root(tmp_path / "root")
    proc = run(INSTALL, root, "--platform", "jetson", "--python", sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    venv = root / "opt/veilcam/venv"
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    code = "import numpy, systemd.daemon; print(numpy.__file__); print(systemd.daemon.__file__)"
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", code], capture_output=True, text=True, cwd="/"
    )
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(str(venv)) for line in probe.stdout.split())
