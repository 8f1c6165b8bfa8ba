#!/usr/bin/env bash
# Remove veilcam: the service, its firewall, the venv and the models. The recordings
# (/var/lib/veilcam) and the config (/etc/veilcam: config.yaml, mqtt-password, lan-networks) stay,
# and so does the veilcam user who owns them, unless --purge is given.
#
#   sudo ./deploy/uninstall.sh [--purge] [--root DIR] [--no-systemctl]
set -euo pipefail

ROOT=/
PURGE=0
SYSTEMCTL=1
while [ $# -gt 0 ]; do
  case $1 in
    --purge) PURGE=1 ;;
    --root) ROOT=$2; shift ;;
    --root=*) ROOT=${1#*=} ;;
    --no-systemctl) SYSTEMCTL=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run as root (sudo $0)" >&2; exit 1; }
ROOT=$(cd "$ROOT" && pwd)
R=${ROOT%/}
[ "$ROOT" = / ] && [ -d /run/systemd/system ] || SYSTEMCTL=0

if ((SYSTEMCTL)); then
  systemctl disable --now --quiet veilcam.service 2>/dev/null || true
  systemctl disable --now --quiet veilcam-firewall.service 2>/dev/null || true
fi
if [ "$ROOT" = / ] && command -v nft >/dev/null; then
  nft delete table inet veilcam 2>/dev/null || true   # in case the unit was not running it
fi
rm -rf "$R/etc/systemd/system/veilcam.service" "$R/etc/systemd/system/veilcam.service.d" \
  "$R/etc/systemd/system/veilcam-firewall.service" \
  "$R/opt/veilcam" "$R/etc/veilcam/firewall.nft"
[ "$(readlink "$R/usr/local/bin/veilcam" 2>/dev/null)" = /opt/veilcam/venv/bin/veilcam ] &&
  rm -f "$R/usr/local/bin/veilcam"
((SYSTEMCTL)) && systemctl daemon-reload

if ((PURGE)); then
  rm -rf "$R/var/lib/veilcam" "$R/etc/veilcam"
  if [ -n "$R" ]; then prefix=(--prefix "$ROOT"); else prefix=(); fi
  if grep -q '^veilcam:' "$R/etc/passwd"; then userdel "${prefix[@]}" veilcam; fi
  if grep -q '^veilcam:' "$R/etc/group"; then groupdel "${prefix[@]}" veilcam; fi
  echo "veilcam removed, with its recordings, config and user"
else
  echo "veilcam removed; kept the recordings (/var/lib/veilcam), the config (/etc/veilcam)" \
    "and the veilcam user: run with --purge to remove them too"
fi
