#!/usr/bin/env bash
# Builds what bench/pi_model.py needs to count a Raspberry Pi's instructions without a Pi:
#   qemu-user (Debian's dynamically linked qemu-aarch64/qemu-x86_64 accept -plugin; the static
#   ones do not), the instruction-count plugin libinsn.so compiled from Debian's own qemu source,
#   an arm64 Debian 12 userland with python3 (debootstrap --foreign, .debs unpacked with
#   dpkg-deb -x: no binfmt, no chroot) and the runtime's aarch64 cp311 wheels unzipped onto one
#   PYTHONPATH directory.
# Everything goes into $VEILCAM_EMU_CACHE (default /var/cache/veilcam-emu), never into the
# repository. Idempotent: each step is skipped when its result is already there. Needs root for
# apt-get (only when a package is missing). Prints the cache directory's layout at the end.
# Usage: scripts/aarch64-emu.sh [--print-env]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CACHE=${VEILCAM_EMU_CACHE:-/var/cache/veilcam-emu}
PY=${PY:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
ROOT=$CACHE/arm64-root
SITE=$CACHE/site-aarch64
PLUGIN=$CACHE/libinsn.so
log() { echo "aarch64-emu: $*" >&2; }
fail() { echo "aarch64-emu: FAIL: $*" >&2; exit 1; }

if [ "${1:-}" = --print-env ]; then
  printf 'VEILCAM_EMU_ROOT=%s\nVEILCAM_EMU_SITE=%s\nVEILCAM_EMU_PLUGIN=%s\n' "$ROOT" "$SITE" "$PLUGIN"
  exit 0
fi
mkdir -p "$CACHE"

# --- host packages ---------------------------------------------------------------------------
need=()
for p in qemu-user debootstrap libglib2.0-dev pkg-config gcc dpkg-dev xz-utils unzip; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
    >"$CACHE/apt.log" 2>&1 || {
    apt-get update -q >>"$CACHE/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
      >>"$CACHE/apt.log" 2>&1 || fail "apt-get install: $(tail -5 "$CACHE/apt.log")"
  }
fi
file -L "$(command -v qemu-aarch64)" 2>/dev/null | grep -q 'statically linked' &&
  fail "$(command -v qemu-aarch64) is statically linked: -plugin needs Debian's qemu-user"

# --- the insn plugin, from Debian's qemu source ----------------------------------------------
if [ ! -s "$PLUGIN" ]; then
  src=$CACHE/qemu-src
  mkdir -p "$src"
  if ! ls "$src"/qemu_*.orig.tar.* >/dev/null 2>&1; then
    if ! apt-get source --print-uris qemu >/dev/null 2>&1; then
      log "adding a deb-src entry for bookworm"
      cat >/etc/apt/sources.list.d/veilcam-deb-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
      apt-get update -q >"$CACHE/apt-src.log" 2>&1 || fail "apt-get update: $(tail -3 "$CACHE/apt-src.log")"
    fi
    log "apt-get source --download-only qemu"
    (cd "$src" && apt-get source --download-only -q qemu >"$CACHE/apt-src.log" 2>&1) ||
      fail "apt-get source qemu: $(tail -3 "$CACHE/apt-src.log")"
  fi
  tarball=$(ls "$src"/qemu_*.orig.tar.* | head -1)
  work=$(mktemp -d)
  # only the two files the plugin needs, not the whole (large) tree
  tar -C "$work" -xf "$tarball" --wildcards '*/tests/plugin/insn.c' '*/include/qemu/qemu-plugin.h'
  top=$(ls -d "$work"/*/ | head -1)
  # the plugin prints a line each time one PC runs twice in a row (x86 rep-prefixed string
  # instructions, spin loops): thousands of lines per frame, so that diagnostic is switched off
  sed -i 's/if (this_pc == c->last_pc) {/if (0) {/' "$top/tests/plugin/insn.c"
  grep -q 'if (0) {' "$top/tests/plugin/insn.c" || fail "insn.c: repeat-message patch did not apply"
  # shellcheck disable=SC2046
  gcc -O2 -shared -fPIC -I "$top/include/qemu" $(pkg-config --cflags glib-2.0) \
    "$top/tests/plugin/insn.c" -o "$PLUGIN.tmp" $(pkg-config --libs glib-2.0)
  mv "$PLUGIN.tmp" "$PLUGIN"
  rm -rf "$work"
  log "built $PLUGIN"
fi

# --- arm64 Debian 12 userland ----------------------------------------------------------------
if [ ! -x "$ROOT/usr/bin/python3.11" ]; then
  log "debootstrap --arch=arm64 --foreign (a few minutes)"
  rm -rf "$ROOT"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 bookworm "$ROOT" \
    http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 ||
    fail "debootstrap: $(tail -5 "$CACHE/debootstrap.log")"
  for deb in "$ROOT"/var/cache/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$ROOT"
  done
  [ -x "$ROOT/usr/bin/python3.11" ] || fail "no python3.11 in $ROOT"
  log "arm64 userland in $ROOT"
fi

# --- aarch64 cp311 wheels, unzipped onto one PYTHONPATH directory ------------------------------
reqs=(ai-edge-litert numpy opencv-python-headless av "paho-mqtt>=2,<3" "pydantic>=2.5,<3" pyyaml
  tqdm "pynacl>=1.5")
stamp=$SITE/.veilcam-wheels
want=$(printf '%s\n' "${reqs[@]}" compiled | cat - "$REPO/deploy/constraints-bookworm.txt" | sha256sum | cut -c1-12)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  wheels=$CACHE/wheels-aarch64
  rm -rf "$wheels" "$SITE"  # only what this resolution picks (no stale versions beside it)
  mkdir -p "$wheels" "$SITE"
  log "pip download aarch64 cp311 wheels"
  "$PY" -m pip --isolated --disable-pip-version-check download -q --index-url https://pypi.org/simple \
    -d "$wheels" --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --abi cp311 \
    --only-binary=:all: -c "$REPO/deploy/constraints-bookworm.txt" "${reqs[@]}" ||
    fail "pip download (aarch64 wheels)"
  for whl in "$wheels"/*.whl; do
    unzip -q -o "$whl" -d "$SITE"
  done
  # bytecode once, here (3.11 on both sides: same magic): each emulated run would otherwise
  # compile numpy's and pydantic's sources again, ~20 s of emulation per start
  "$PY" -m compileall -q -j 0 "$SITE" >/dev/null || true
  # readable by the user bench/pi_model.py runs as
  chmod -R a+rX "$SITE"
  echo "$want" >"$stamp"
  log "wheels unzipped into $SITE"
fi

log "ok: plugin $PLUGIN, root $ROOT, site $SITE"
