#!/usr/bin/env bash
# Deployment checks for CI (run after scripts/setup.sh, from the repository root or anywhere):
#   units   systemd-analyze verify (any warning fails) and security --offline (exposure <= 2.0)
#           of systemd/*.service, with an IPAddressAllow drop-in rendered by daemon.netpolicy
#   deps    the runtime requirements resolve to binary wheels for linux-aarch64 / CPython 3.11
#           (as on Raspberry Pi OS Bookworm and JetPack), from PyPI only
#   scripts bash -n on the deploy scripts
#   boot    deploy/install.sh for real in a Debian 12 container booted with systemd (systemd-nspawn,
#           private network): the firewall loads, the service runs inside its sandbox (a probe
#           started by the same unit reports what it may and may not do), reload works, a second
#           install changes nothing, uninstall keeps the recordings. Needs root; the container's
#           root file system is cached in $VEILCAM_CI_CACHE (default /var/cache/veilcam-ci).
#   pimodel the detector's instructions per run at 544x416 on cortex-a76 (qemu-aarch64 with the
#           insn plugin), at most 10 % over bench/pi_baseline.json: a per-frame regression on the
#           Pi is visible in every change; and the detector and masker on every dlib_faces photo
#           under cortex-a76 and cortex-a72 give x86's faces (1 px, 0.02) and masks (1 level). Needs root the first time (apt-get); the emulator,
#           arm64 userland and wheels are cached in $VEILCAM_EMU_CACHE (/var/cache/veilcam-emu).
# Usage: .ci/deploy-checks.sh [units|deps|scripts|boot|pimodel]...   (no argument: all of them)
# UNIT_DIR=dir overrides where the units are read from (the tests use it to show a weak unit fails).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-$REPO/.venv/bin/python}
UNIT_DIR=${UNIT_DIR:-$REPO/systemd}
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
WORK=$(mktemp -d)
CT_PID=""
cleanup() {
  if [ -n "$CT_PID" ] && kill -0 "$CT_PID" 2>/dev/null; then
    kill "$CT_PID"  # systemd-nspawn: the container powers off
    for _ in $(seq 1 60); do kill -0 "$CT_PID" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$CT_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "deploy-checks: FAIL: $*" >&2; exit 1; }

check_units() {
  command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (apt-get install systemd)"
  # verify needs every Exec*= binary to exist: check copies whose /opt/veilcam paths point into a
  # scratch tree holding stand-ins; everything else (/usr/sbin/nft, /bin/kill) is the real thing.
  local stage=$WORK/units fake=$WORK/opt/veilcam
  mkdir -p "$stage" "$fake/venv/bin"
  printf '#!/bin/sh\nexit 0\n' >"$fake/venv/bin/veilcam"
  chmod 755 "$fake/venv/bin/veilcam"
  local units=("$UNIT_DIR"/*.service)
  [ -e "${units[0]}" ] || fail "no unit in $UNIT_DIR"
  for u in "${units[@]}"; do
    sed "s#/opt/veilcam/#$fake/#g" "$u" >"$stage/$(basename "$u")"
  done
  # the drop-ins install.sh writes, for a broker on the LAN, an RTSP camera and a USB disk
  mkdir -p "$stage/veilcam.service.d"
  PYTHONPATH=$REPO "$PY" - "$stage/veilcam.service.d/50-network.conf" <<'EOF'
import sys
from ipaddress import ip_address
from pathlib import Path
from types import SimpleNamespace
from daemon.netpolicy import Peer, render_dropin, render_paths_dropin
peers = [Peer("mqtt", "192.0.2.10", 1883, (ip_address("192.0.2.10"),)),
         Peer("camera", "192.0.2.20", 554, (ip_address("192.0.2.20"),))]
Path(sys.argv[1]).write_text(render_dropin(peers))
usb = Path("/mnt/usb disk/rec \"1\" 100%")  # recordings on a USB disk (quoted in the drop-in)
rec = SimpleNamespace(path=usb, resolved_state_file=lambda: usb.parent / "state.json")
Path(sys.argv[1]).with_name("50-paths.conf").write_text(render_paths_dropin(SimpleNamespace(recording=rec)))
EOF
  for u in "$stage"/*.service; do
    local name err
    name=$(basename "$u")
    err=$(cd "$stage" && systemd-analyze verify "$u" 2>&1) || fail "verify $name: $err"
    [ -z "$err" ] || fail "verify $name printed warnings:"$'\n'"$err"
    echo "verify $name: ok"
  done
  local report overall
  report=$(cd "$stage" && systemd-analyze security --offline=yes "$stage/veilcam.service" 2>&1) ||
    fail "security veilcam.service: $report"
  overall=$(grep -o 'Overall exposure level for veilcam.service: [0-9.]*' <<<"$report" |
    grep -o '[0-9.]*$') || fail "no exposure level in:"$'\n'"$report"
  if ! awk -v x="$overall" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(x <= m) }'; then
    echo "$report" | grep -E '✗|Overall' >&2
    fail "veilcam.service exposure $overall > $MAX_EXPOSURE"
  fi
  echo "security veilcam.service: exposure $overall (max $MAX_EXPOSURE)"
}

check_deps_requirements() {
  # setup.cfg's install_requires, less systemd-python (sdist only: see check_deps)
  "$PY" - "$REPO/setup.cfg" <<'EOF'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
for line in cfg["options"]["install_requires"].strip().splitlines():
    req = line.split(";", 1)[0].strip()
    if req and not req.startswith("#") and not req.startswith("systemd-python"):
        print(req)
EOF
}

check_deps() {
  check_deps_requirements >"$WORK/requirements.txt"
  local plat=(--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64
    --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --abi cp311
    --only-binary=:all:)
  # --isolated: PyPI itself, not a local mirror or wheel folder this machine may have
  local pip=("$PY" -m pip --isolated --disable-pip-version-check download -q
    --index-url https://pypi.org/simple)
  local name con
  for name in jetson bookworm; do
    con=()
    [ "$name" = bookworm ] && con=(-c "$REPO/deploy/constraints-bookworm.txt")
    mkdir -p "$WORK/$name"
    "${pip[@]}" -d "$WORK/$name" "${plat[@]}" -r "$WORK/requirements.txt" "${con[@]}" ||
      fail "requirements do not resolve for aarch64/cp311 ($name)"
    echo "aarch64 cp311 ($name):" $(cd "$WORK/$name" && ls | sed 's/-cp.*\|-py.*//' | sort)
    ls "$WORK/$name" | grep -q '^ai_edge_litert-1\.4\.' ||
      fail "expected ai-edge-litert 1.4.x for aarch64/cp311 ($name)"
  done
  ls "$WORK/bookworm" | grep -q '^numpy-1\.' || fail "bookworm constraints did not keep numpy < 2"
  # systemd-python ships only an sdist; install.sh builds it on the device (libsystemd-dev) unless
  # apt's python3-systemd already satisfies it. Show that the sdist is there.
  "${pip[@]}" -d "$WORK/sdist" --no-deps --no-binary=:all: "systemd-python>=234" ||
    fail "systemd-python sdist not found"
  echo "systemd-python (sdist):" $(ls "$WORK/sdist")
}

check_scripts() {
  local s
  for s in deploy/*.sh; do
    bash -n "$s" || fail "bash -n $s"
    echo "bash -n $s: ok"
  done
}

# --- boot: install.sh in a Debian 12 container with systemd as PID 1 ---------------------------
CT_PKGS=systemd,systemd-sysv,dbus,python3,python3-venv,python3-systemd,python3-numpy,iproute2,nftables,ca-certificates,mosquitto,mosquitto-clients,procps
PROBE=$(cat <<'EOF'
"""Started by veilcam.service itself (ExecStart swapped): reports what its sandbox allows."""
import errno, json, mmap, os, resource, socket
from pathlib import Path


def attempt(fn):
    try:
        fn()
        return "ok"
    except TimeoutError:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def connect(addr):
    return lambda: socket.create_connection((addr, 1883), timeout=3).close()


def write(path):
    def f():
        Path(path).write_text("x")
        Path(path).unlink()
    return f


def fstype(mountpoint):
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ")
        if left.split()[4] == mountpoint:
            found = right.split()[0]
    return found


def runtime():
    import av, cv2  # noqa: F401
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401


r = {
    "root": os.getuid() == 0,
    "broker": attempt(connect("127.0.0.1")),
    "other_address": attempt(connect("127.0.0.2")),
    "wx_memory": attempt(lambda: mmap.mmap(-1, 4096, prot=7)),
    "write_data": attempt(write("/var/lib/veilcam/probe.tmp")),
    "write_etc": attempt(write("/etc/veilcam/probe.tmp")),
    "write_opt": attempt(write("/opt/veilcam/probe.tmp")),
    "write_tmp_is_private": attempt(write("/tmp/probe.tmp")),
    "netlink": attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()),
    "packet": attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()),
    "cpuinfo": attempt(lambda: Path("/proc/cpuinfo").read_bytes()),
    "home": attempt(lambda: os.listdir("/root")),
    "nice": attempt(lambda: os.nice(-1)),
    "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
    "tmp_fs": fstype("/tmp"),
    "runtime": attempt(runtime),
}
print(json.dumps(r, sort_keys=True))
EOF
)
PROBE_WANT='{"broker": "ok", "core": 0, "cpuinfo": "ok", "home": "EACCES", "netlink": "EAFNOSUPPORT", "nice": "EPERM", "other_address": "timeout", "packet": "EAFNOSUPPORT", "root": false, "runtime": "ok", "tmp_fs": "tmpfs", "write_data": "ok", "write_etc": "EROFS", "write_opt": "EROFS", "write_tmp_is_private": "ok", "wx_memory": "EPERM"}'

in_ct() {
  nsenter -t "$CT_INIT" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
  local secs=$1 what=$2 end
  shift 2
  end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "boot: timed out after ${secs}s waiting for $what"
    sleep 1
  done
}

check_boot() {
  [ "$(id -u)" -eq 0 ] || fail "boot needs root"
  if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      systemd-container debootstrap >/dev/null
  fi
  local cache=${VEILCAM_CI_CACHE:-/var/cache/veilcam-ci} rootfs=$WORK/rootfs key tarball
  key=$(printf '%s' "$CT_PKGS" | sha256sum | cut -c1-12)
  tarball=$cache/bookworm-$key.tar
  mkdir -p "$rootfs"
  if [ -s "$tarball" ]; then
    tar -C "$rootfs" -xf "$tarball"
  else
    echo "boot: debootstrap bookworm (a few minutes, cached in $cache)"
    debootstrap --variant=minbase --include="$CT_PKGS" bookworm "$rootfs" \
      http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
      fail "debootstrap: $(tail -5 "$WORK/debootstrap.log")"
    mkdir -p "$cache"
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  fi

  # the source as CI has it, wheels for the container's Python (no network in there), a clip
  tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.ruff_cache --exclude=models/.work --exclude=models/.convert-venv -cf - . |
    (mkdir -p "$rootfs/src" && tar -C "$rootfs/src" -xf -)
  local np
  np=$(chroot "$rootfs" python3 -c 'import numpy; print(numpy.__version__)')
  { cat "$REPO/deploy/constraints-bookworm.txt"; echo "numpy==$np"; } >"$WORK/ct-constraints.txt"
  check_deps_requirements >"$WORK/ct-requirements.txt"
  "$PY" -m pip --isolated --disable-pip-version-check download -q --index-url https://pypi.org/simple \
    --only-binary=:all: -d "$rootfs/wheels" -c "$WORK/ct-constraints.txt" \
    -r "$WORK/ct-requirements.txt" "setuptools>=61" wheel || fail "boot: wheels for the container"
  local clip
  clip=$(ls "$REPO"/../shared/data/videos/intel_asl_gestures/*.mkv 2>/dev/null | head -1 || true)
  mkdir -p "$rootfs/srv/veilcam" "$rootfs/etc/veilcam"
  [ -z "$clip" ] || cp "$clip" "$rootfs/srv/veilcam/sample.mkv"
  chmod -R a+rX "$rootfs/srv/veilcam"
  printf '%s\n' "$PROBE" >"$rootfs/srv/veilcam/probe.py"
  # an admin's own config, there before the install: it must be kept (and made 0640 root:veilcam)
  printf 'camera:\n  source: /srv/veilcam/sample.mkv\nmqtt:\n  host: 127.0.0.1\n' \
    >"$rootfs/etc/veilcam/config.yaml"
  chmod 0600 "$rootfs/etc/veilcam/config.yaml"

  # boot it: own network namespace (loopback only), cgroup v2, BPF allowed for IPAddressDeny=
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$rootfs" --boot --private-network \
    --register=no --keep-unit -M "vcci$$" --capability=CAP_BPF,CAP_PERFMON,CAP_MKNOD \
    --system-call-filter=bpf >"$WORK/console.log" 2>&1 &
  CT_PID=$!
  wait_for 30 "the container's init" pgrep -P "$CT_PID"
  CT_INIT=$(pgrep -P "$CT_PID" | head -1)
  wait_for 90 "the container to boot" in_ct systemctl is-system-running --wait
  echo "boot: container up (systemd $(in_ct systemctl --version | head -1 | cut -d' ' -f2))"

  local out rc
  out=$(in_ct env PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels bash /src/deploy/install.sh --platform pi \
    --no-apt 2>&1) && rc=0 || rc=$?
  echo "$out" >"$WORK/install1.log"
  local models=0
  [ -e "$REPO/models/manifest.yaml" ] && ls "$REPO"/models/*.tflite >/dev/null 2>&1 && models=1
  if ((models)) && [ -n "$clip" ]; then
    ((rc == 0)) || fail "boot: install.sh failed:"$'\n'"$out"$'\n'"$(in_ct journalctl -u veilcam --no-pager | tail -20)"
  else
    # no model (or no clip): the service must refuse to run, loudly, and install.sh say so
    ((rc == 1)) && grep -q "veilcam.service did not start" <<<"$out" ||
      fail "boot: expected the service to refuse to start without a model:"$'\n'"$out"
    in_ct journalctl -u veilcam --no-pager | grep -q "model" ||
      fail "boot: the journal does not say the model is missing"
    echo "boot: no model in models/: the service refused to start, as it must"
  fi
  [ "$(in_ct stat -c '%a %U:%G' /etc/veilcam/config.yaml)" = "640 root:veilcam" ] ||
    fail "boot: config.yaml not 0640 root:veilcam"
  in_ct grep -q sample.mkv /etc/veilcam/config.yaml || fail "boot: the admin's config was replaced"
  [ "$(in_ct systemctl is-active veilcam-firewall)" = active ] || fail "boot: firewall not active"
  in_ct nft list table inet veilcam >/dev/null || fail "boot: nft table inet veilcam missing"
  in_ct systemctl is-enabled --quiet veilcam || fail "boot: veilcam.service not enabled"
  echo "boot: install.sh ok; firewall loaded; unit enabled"

  # the sandbox, as the unit makes it: same unit file and drop-ins, ExecStart swapped for the probe
  in_ct bash -c 'set -e
    u=/etc/systemd/system
    sed -e "s#^ExecStart=.*#ExecStart=/opt/veilcam/venv/bin/python /srv/veilcam/probe.py#" \
      -e "s#^Type=.*#Type=exec#" -e "s#^Restart=.*#Restart=no#" $u/veilcam.service >$u/vcprobe.service
    mkdir -p $u/vcprobe.service.d && cp $u/veilcam.service.d/*.conf $u/vcprobe.service.d/
    systemctl daemon-reload
    systemctl start --wait vcprobe.service'
  local got
  got=$(in_ct journalctl -u vcprobe -o cat --no-pager | grep '^{' | tail -1)
  [ "$got" = "$PROBE_WANT" ] || fail "boot: sandbox probe"$'\n'"  got:  $got"$'\n'"  want: $PROBE_WANT"
  echo "boot: sandbox ok: $got"

  # PrivateUsers=yes leaves the video group unmapped; the kernel must still grant it the camera.
  # A V4L2 node (major 81) with no driver behind it: ENXIO = allowed through, EACCES = not.
  got=$(in_ct bash -c 'mknod -m 0660 /dev/video0 c 81 0 && chgrp video /dev/video0
    printf "%s\n" "import errno, os" "try:" "    os.open(\"/dev/video0\", os.O_RDWR)" \
      "except OSError as e:" "    print(errno.errorcode[e.errno])" >/srv/veilcam/open.py
    chmod 644 /srv/veilcam/open.py
    systemd-run --wait --pipe -q -p User=veilcam -p SupplementaryGroups=video -p PrivateUsers=yes \
      -p DevicePolicy=closed -p "DeviceAllow=/dev/video0 rw" python3 /srv/veilcam/open.py')
  [ "$got" = ENXIO ] || fail "boot: veilcam (PrivateUsers=yes) cannot open a root:video node: $got"
  echo "boot: camera group access survives PrivateUsers=yes"

  if ((models)) && [ -n "$clip" ]; then
    wait_for 60 "veilcam.service active" in_ct systemctl is-active --quiet veilcam
    wait_for 90 "a recording" in_ct bash -c 'find /var/lib/veilcam/recordings -type f -size +1k | grep -q .'
    in_ct systemctl reload veilcam || fail "boot: reload"
    wait_for 30 "the reload to be logged" in_ct bash -c 'journalctl -u veilcam --no-pager | grep -qi reload'
    in_ct systemctl is-active --quiet veilcam || fail "boot: not active after reload"
    # it reports to the broker (through IPAddressAllow= and the firewall)
    in_ct mosquitto_sub -h 127.0.0.1 -t 'veilcam/#' -C 1 -W 20 >/dev/null ||
      fail "boot: nothing published on veilcam/# at the broker"
    # past WatchdogSec (30 s) without being restarted: WATCHDOG=1 keeps coming
    wait_for 90 "40 s of uptime" in_ct bash -c \
      'since=$(systemctl show -p ActiveEnterTimestampMonotonic --value veilcam)
       now=$(cut -d" " -f1 /proc/uptime | tr -d .)0000
       [ $((now - since)) -gt 40000000 ]'
    in_ct systemctl is-active --quiet veilcam || fail "boot: service died (watchdog?)"
    [ "$(in_ct systemctl show -p NRestarts --value veilcam)" = 0 ] ||
      fail "boot: the service was restarted:"$'\n'"$(in_ct journalctl -u veilcam --no-pager | tail -20)"
    local pid hwm
    pid=$(in_ct systemctl show -p MainPID --value veilcam)
    hwm=$(in_ct awk '/^VmHWM/ { print int($2 / 1024) " MB" }' "/proc/$pid/status")
    echo "boot: service running, recording, reloaded, publishing, watchdog fed:" \
      "$(in_ct systemctl show -p StatusText --value veilcam); peak RSS $hwm (MemoryMax=1G)"
  fi

  # again: same result
  out=$(in_ct env PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels bash /src/deploy/install.sh --platform pi \
    --no-apt 2>&1) && local rc2=0 || local rc2=$?
  ((rc2 == rc)) || fail "boot: second install.sh exited $rc2, first $rc:"$'\n'"$out"
  [ "$(in_ct systemctl is-active veilcam-firewall)" = active ] || fail "boot: firewall after re-install"

  in_ct mkdir -p /var/lib/veilcam/recordings/keep && in_ct touch /var/lib/veilcam/recordings/keep/x.mp4
  in_ct bash /src/deploy/uninstall.sh >/dev/null || fail "boot: uninstall.sh"
  in_ct test -e /var/lib/veilcam/recordings/keep/x.mp4 || fail "boot: uninstall lost the recordings"
  in_ct test -e /etc/veilcam/config.yaml || fail "boot: uninstall lost the config"
  ! in_ct nft list table inet veilcam >/dev/null 2>&1 || fail "boot: firewall table left behind"
  ! in_ct test -e /etc/systemd/system/veilcam.service || fail "boot: unit left behind"
  echo "boot: re-install same result; uninstall kept recordings and config"
}

check_pimodel() {
  PY="$PY" "$PY" "$REPO/bench/pi_model.py" --ci || fail "pimodel: see above"
  # issue 11.15: the detector and the masker on aarch64 find what they find on x86
  PY="$PY" "$PY" "$REPO/bench/pi_model.py" --check-only --cpus a76,a72 --res 720 \
    || fail "pimodel: aarch64 detections or masks differ from x86's"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(units deps scripts boot pimodel)
for step in "${steps[@]}"; do
  case $step in
    units) check_units ;;
    deps) check_deps ;;
    scripts) check_scripts ;;
    boot) check_boot ;;
    pimodel) check_pimodel ;;
    *) fail "unknown step $step" ;;
  esac
done
echo "deploy-checks: ok (${steps[*]})"
