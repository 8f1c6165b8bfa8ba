#!/usr/bin/env bash
# Deployment checks for CI (run after scripts/setup.sh, from the repository root or anywhere):
#   units   systemd-analyze verify (any warning fails) and security --offline (exposure <= 2.0)
#           of systemd/*.service, with an IPAddressAllow drop-in rendered by daemon.netpolicy
#   deps    the runtime requirements resolve to binary wheels for linux-aarch64 / CPython 3.11
#           (as on Raspberry Pi OS Bookworm and JetPack), from PyPI only
#   scripts bash -n on the deploy scripts
# Usage: .ci/deploy-checks.sh [units|deps|scripts]...   (no argument: all of them)
# UNIT_DIR=dir overrides where the units are read from (the tests use it to show a weak unit fails).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-$REPO/.venv/bin/python}
UNIT_DIR=${UNIT_DIR:-$REPO/systemd}
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

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
usb = Path("/mnt/usb/recordings")  # recordings on a USB disk
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

check_deps() {
  # Requirements from setup.cfg's install_requires, less systemd-python (sdist only, see below).
  "$PY" - "$REPO/setup.cfg" >"$WORK/requirements.txt" <<'EOF'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
for line in cfg["options"]["install_requires"].strip().splitlines():
    req = line.split(";", 1)[0].strip()
    if req and not req.startswith("#") and not req.startswith("systemd-python"):
        print(req)
EOF
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

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(units deps scripts)
for step in "${steps[@]}"; do
  case $step in
    units) check_units ;;
    deps) check_deps ;;
    scripts) check_scripts ;;
    *) fail "unknown step $step" ;;
  esac
done
echo "deploy-checks: ok (${steps[*]})"
