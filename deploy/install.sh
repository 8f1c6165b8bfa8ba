#!/usr/bin/env bash
# Install (or update) veilcam as a locked-down systemd service on Raspberry Pi OS Bookworm
# (Pi 4/5), JetPack, or plain Debian 12. Run it again at any time: the result is the same, and an
# edited /etc/veilcam/config.yaml is never overwritten.
#
#   sudo ./deploy/install.sh                  # from a clone of the repository
#
# Options:
#   --root DIR       install into DIR instead of / (a staging tree: no apt, no systemctl; the
#                    venv works in place only). Used by the tests.
#   --no-apt         do not install system packages
#   --no-systemctl   do not reload, enable or (re)start anything
#   --no-firewall    do not install the appliance firewall (veilcam-firewall.service)
#   --platform P     pi | jetson | debian (default: detected)
#   --python PATH    interpreter for the venv (default: python3, or python3.11 where python3 is older)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=/
APT=1
SYSTEMCTL=1
FIREWALL=1
PLATFORM=""
PYTHON=""

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=$2; shift ;;
    --root=*) ROOT=${1#*=} ;;
    --no-apt) APT=0 ;;
    --no-systemctl) SYSTEMCTL=0 ;;
    --no-firewall) FIREWALL=0 ;;
    --platform) PLATFORM=$2; shift ;;
    --python) PYTHON=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo $0)" >&2; exit 1; }
ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)
R=${ROOT%/}                       # prefix for every path below ("" for the real system)
if [ "$ROOT" != / ]; then APT=0; SYSTEMCTL=0; fi
[ -d /run/systemd/system ] || SYSTEMCTL=0

OPT=/opt/veilcam
VENV=$OPT/venv
ETC=/etc/veilcam
DATA=/var/lib/veilcam
UNITS=/etc/systemd/system

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }

# --- platform --------------------------------------------------------------------------------
if [ -z "$PLATFORM" ]; then
  model=$(tr -d '\0' </proc/device-tree/model 2>/dev/null || true)
  if [[ $model == *"Raspberry Pi"* ]]; then
    PLATFORM=pi
  elif [ -e /etc/nv_tegra_release ] || [[ $model == *NVIDIA* || $model == *Jetson* ]]; then
    PLATFORM=jetson
  else
    PLATFORM=debian
  fi
fi
case $PLATFORM in pi | jetson | debian) ;; *) echo "install.sh: bad --platform $PLATFORM" >&2; exit 2 ;; esac
say "platform: $PLATFORM, installing into ${ROOT}"

# The appliance firewall of an earlier install blocks apt's mirrors and PyPI: lift it while this
# script runs; it is loaded again at the end (or on the way out, if something fails).
constraints=$(mktemp)
firewall_was_up=0
finish() {
  rm -f "$constraints"
  if ((firewall_was_up)) && ! systemctl is-active --quiet veilcam-firewall.service; then
    systemctl start veilcam-firewall.service || true
  fi
}
trap finish EXIT
if ((SYSTEMCTL)) && systemctl is-active --quiet veilcam-firewall.service; then
  say "lifting the appliance firewall while installing"
  firewall_was_up=1
  systemctl stop veilcam-firewall.service
fi

# --- system packages -------------------------------------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if [ -z "$PYTHON" ]; then
  PYTHON=python3
  # JetPack 6 (Ubuntu 22.04) ships Python 3.10: use its python3.11 package instead
  py_ok python3 || PYTHON=python3.11
fi
if ((APT)); then
  pkgs=(ca-certificates python3 python3-venv python3-dev gcc pkg-config libsystemd-dev
    python3-systemd ffmpeg nftables iproute2)
  [ "$PLATFORM" = pi ] && pkgs+=(python3-picamera2 python3-libcamera)
  [ "$PYTHON" = python3.11 ] && pkgs+=(python3.11 python3.11-venv python3.11-dev)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "apt-get install ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
py_ok "$PYTHON" || { echo "install.sh: $PYTHON is not Python >= 3.11" >&2; exit 1; }

# --- user and directories --------------------------------------------------------------------
if [ -n "$R" ]; then
  PREFIX=(--prefix "$ROOT")
  lookup() { grep -q "^$2:" "$R/etc/$1" 2>/dev/null; }
else
  PREFIX=()
  lookup() { getent "$1" "$2" >/dev/null; }
fi
lookup group video || groupadd "${PREFIX[@]}" --system video
if ! lookup passwd veilcam; then
  say "creating system user veilcam (group video)"
  useradd "${PREFIX[@]}" --system --user-group --groups video --home-dir "$DATA" \
    --no-create-home --shell /usr/sbin/nologin --comment "veilcam camera service" veilcam
elif ! grep -q "^video:.*[:,]veilcam\(,\|$\)" "$R/etc/group"; then
  usermod "${PREFIX[@]}" --append --groups video veilcam
fi
VUID=$(awk -F: '$1 == "veilcam" { print $3 }' "$R/etc/passwd")
VGID=$(awk -F: '$1 == "veilcam" { print $3 }' "$R/etc/group")

install -d -m 0755 -o 0 -g 0 "$R$OPT" "$R$OPT/share" "$R$ETC" "$R$UNITS" "$R/usr/local/bin"
install -d -m 0750 -o "$VUID" -g "$VGID" "$R$DATA" "$R$DATA/recordings"

# --- venv, package, models -------------------------------------------------------------------
venv_py=$R$VENV/bin/python
if [ -x "$venv_py" ] && ! "$venv_py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  rm -rf "$R$VENV"   # made by an older Python: start again
fi
# On a Pi the venv sees apt's packages (picamera2 and libcamera exist only there); elsewhere it
# is self-contained, so that no apt module built for another Python version can shadow a wheel.
site=() with_site=false
if [ "$PLATFORM" = pi ]; then site=(--system-site-packages) with_site=true; fi
if [ -x "$venv_py" ] &&
  ! grep -qx "include-system-site-packages = $with_site" "$R$VENV/pyvenv.cfg"; then
  rm -rf "$R$VENV"   # made for another platform: start again
fi
if [ ! -x "$venv_py" ]; then
  say "creating venv $VENV (system site packages: $with_site)"
  "$PYTHON" -m venv "${site[@]}" "$R$VENV"
fi
if [ "$PLATFORM" = pi ]; then
  cat "$SRC/deploy/constraints-bookworm.txt" >>"$constraints"
  # use exactly apt's numpy, which picamera2 and simplejpeg were built against
  sysnp=$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
  if [ -n "$sysnp" ]; then echo "numpy==$sysnp" >>"$constraints"; fi
fi
say "installing veilcam into $VENV"
# from a copy of the source kept at $OPT/src: the build never writes into the clone, and pip
# records the same origin on every run
rm -rf "$R$OPT/src"
install -d -m 0755 "$R$OPT/src"
tar -C "$SRC" --exclude=__pycache__ -cf - setup.cfg pyproject.toml README.md LICENSE daemon |
  tar -C "$R$OPT/src" --no-same-owner -xf -
"$venv_py" -m pip install -q --disable-pip-version-check --no-warn-script-location \
  -c "$constraints" "$R$OPT/src"
rm -rf "$R$OPT/src/build" "$R$OPT/src"/*.egg-info
# systemd-python (sd_notify, the journal) has no wheel: on a Pi apt's python3-systemd provides it;
# elsewhere pip has just built it from the sdist (gcc, libsystemd-dev). Make sure it imports.
if ! "$venv_py" -c 'import systemd.daemon, systemd.journal' 2>/dev/null; then
  say "building systemd-python for $VENV"
  "$venv_py" -m pip install -q --disable-pip-version-check --ignore-installed --no-deps \
    --no-binary systemd-python systemd-python
fi

say "installing models into $OPT/models"
rm -rf "$R$OPT/models.new"
install -d -m 0755 "$R$OPT/models.new"
if [ -d "$SRC/models" ]; then
  # the models, manifest, verification and licences; not the converter (scripts, its venv)
  (cd "$SRC/models" && find . \( -name '.?*' -o -name __pycache__ \) -prune -o -type f \
    -not -name '*.py' -not -name '*.sh' -not -name 'requirements-*.txt' -print0) |
    while IFS= read -r -d '' f; do install -D -m 0644 "$SRC/models/$f" "$R$OPT/models.new/$f"; done
fi
ls "$R$OPT/models.new"/*.tflite >/dev/null 2>&1 ||
  warn "no .tflite model in $SRC/models: the service will refuse to record until one is there"
rm -rf "$R$OPT/models"
mv "$R$OPT/models.new" "$R$OPT/models"
install -m 0644 "$SRC/deploy/nftables.conf" "$R$OPT/share/nftables.conf"
install -m 0644 "$SRC/README.md" "$R$OPT/README.md"
ln -sfn "$VENV/bin/veilcam" "$R/usr/local/bin/veilcam"

# --- config ----------------------------------------------------------------------------------
# the documented defaults and examples, for reference; the live config is never overwritten
install -m 0644 "$SRC/config.yaml" "$R$OPT/share/config.yaml"
install -d -m 0755 "$R$OPT/share/examples"
install -m 0644 "$SRC"/deploy/examples/* "$R$OPT/share/examples/"
if [ ! -e "$R$ETC/config.yaml" ]; then
  say "installing the default config $ETC/config.yaml"
  install -m 0640 -o 0 -g "$VGID" "$SRC/config.yaml" "$R$ETC/config.yaml"
elif ! cmp -s "$SRC/config.yaml" "$R$ETC/config.yaml"; then
  say "kept your $ETC/config.yaml (the defaults are in $OPT/share/config.yaml)"
fi
# readable by the service and nobody else, whoever wrote them (they may hold passwords)
for f in config.yaml mqtt-password; do
  if [ -e "$R$ETC/$f" ]; then
    chown 0:"$VGID" "$R$ETC/$f"
    chmod 0640 "$R$ETC/$f"
  fi
done
# `veilcam check-config`, through its own module only (lighter than the whole command line)
check_config() {
  "$venv_py" - "$@" <<'EOF'
import argparse, sys
from daemon.commands import check_config
p = argparse.ArgumentParser(prog="veilcam check-config")
check_config.add_arguments(p)
sys.exit(check_config.run(p.parse_args()))
EOF
}
config_ok=1
check_config "$R$ETC/config.yaml" || config_ok=0
((config_ok)) || warn "$ETC/config.yaml has errors (above): fix it, then run this script again"

# --- units, allow-list, firewall -------------------------------------------------------------
install -m 0644 "$SRC/systemd/veilcam.service" "$R$UNITS/veilcam.service"
if ((FIREWALL)); then
  install -m 0644 "$SRC/systemd/veilcam-firewall.service" "$R$UNITS/veilcam-firewall.service"
fi
network_ok=0
service_ok=1
if ((config_ok)); then
  say "writing the network allow-list from $ETC/config.yaml"
  if check_config --apply-network --root "$ROOT" "$R$ETC/config.yaml"; then
    network_ok=1
  else
    warn "no allow-list written: the service can reach nothing until" \
      "'veilcam check-config --apply-network' succeeds"
  fi
fi

# SSH sessions open now from outside the LAN networks would not get back in through the firewall
if ((FIREWALL)) && [ "$ROOT" = / ] && command -v ss >/dev/null && [ -e "$ETC/firewall.nft" ]; then
  outside=$(ss -Htn state established 2>/dev/null | "$venv_py" -c 'import sys
from pathlib import Path
from daemon.netpolicy import LAN_FILE, SSHD_CONFIG, outside_lan, read_lan, read_ssh_ports
ports = {str(p) for p in read_ssh_ports(Path("/") / SSHD_CONFIG)}
peers = [ln.split()[3].rsplit(":", 1)[0] for ln in sys.stdin
         if len(ln.split()) >= 4 and ln.split()[2].rsplit(":", 1)[-1] in ports]
print(" ".join(outside_lan(peers, read_lan(Path("/") / LAN_FILE))))' || true)
  [ -z "$outside" ] || warn "connections open from $outside, outside the LAN networks allowed to" \
    "SSH in; list their network in $ETC/lan-networks and run 'veilcam check-config --apply-network'"
fi

if ((SYSTEMCTL)); then
  systemctl daemon-reload
  systemctl enable --quiet veilcam.service
  if ((FIREWALL)) && [ -e "$ETC/firewall.nft" ]; then
    say "enabling the appliance firewall (SSH from the local network only)"
    systemctl enable --quiet veilcam-firewall.service
    systemctl restart veilcam-firewall.service
  elif ((FIREWALL == 0)) && [ -e "$UNITS/veilcam-firewall.service" ]; then
    systemctl disable --now --quiet veilcam-firewall.service || true
    rm -f "$UNITS/veilcam-firewall.service"
    systemctl daemon-reload
  fi
  if ((config_ok)) && ! systemctl restart veilcam.service; then
    service_ok=0
    warn "veilcam.service did not start; 'journalctl -u veilcam' says why"
  fi
fi

say "veilcam installed"
cat <<EOF
  config:      $ETC/config.yaml   (then: sudo veilcam check-config && sudo systemctl reload veilcam)
  broker/firewall changes:        sudo veilcam check-config --apply-network && sudo systemctl restart veilcam
  recordings:  $DATA/recordings
  check it:    systemctl status veilcam
               journalctl -u veilcam -f
EOF
((config_ok && network_ok && service_ok)) || exit 1
