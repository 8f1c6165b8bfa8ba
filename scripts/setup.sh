#!/usr/bin/env bash
# Set up a development/test environment on Debian 12 or Raspberry Pi OS Bookworm:
# the system packages veilcam and its tests use, then a venv at .venv with veilcam installed.
# Safe to run again. Run as root (or with sudo) so that apt-get can install what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc pkg-config libsystemd-dev   # systemd-python builds here
  ffmpeg                                                             # ffprobe checks in tests
  mosquitto mosquitto-clients openssl                                # MQTT tests start their own broker
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools           # a real RTSP server for tests
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav
  opencv-doc                                                         # real sample clips (vtest.avi)
  nftables iproute2 systemd                                          # firewall and unit checks
  python3-numpy python3-systemd                                      # install.sh test: Pi-like venv
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
echo "veilcam set up in $(pwd)/.venv"
