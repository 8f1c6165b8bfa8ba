#!/usr/bin/env bash
# The one-command demo: set everything up, then run the daemon and record only masked video.
#
#   sudo ./scripts/demo.sh            # first camera found, else a sample clip (opencv-doc)
#   sudo ./scripts/demo.sh FILE       # a video file of your own
#
# Segments go to ./veilcam-out/recordings/demo/YYYY-MM-DD/. A camera runs until Ctrl-C (or for
# DEMO_SECONDS); a file plays once at its own frame rate. MQTT: the demo reports to a broker
# on 127.0.0.1:1883 when one runs there, and records just the same when none does.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${DEMO_OUT:-$REPO/veilcam-out}
SAMPLE_DIR=/usr/share/doc/opencv-doc/examples/data

bash scripts/setup.sh
PY=$REPO/.venv/bin/python
mkdir -p "$OUT/recordings"

source_arg=${1:-}
loop=false
if [ -n "$source_arg" ]; then
  [ -e "$source_arg" ] || { echo "demo: $source_arg: no such file" >&2; exit 1; }
  source_arg=$(realpath "$source_arg")
elif camera=$("$PY" -c 'from daemon.capture.sources import resolve_auto; print(resolve_auto())' 2>/dev/null); then
  source_arg=$camera
  echo "demo: camera found: $camera"
else
  # no camera: a real clip of people walking that Debian's opencv-doc installs
  if [ -f "$SAMPLE_DIR/vtest.avi" ]; then
    source_arg=$SAMPLE_DIR/vtest.avi
  elif [ -f "$SAMPLE_DIR/vtest.avi.gz" ]; then
    gunzip -c "$SAMPLE_DIR/vtest.avi.gz" >"$OUT/vtest.avi"
    source_arg=$OUT/vtest.avi
  else
    echo "demo: no camera and no sample clip ($SAMPLE_DIR/vtest.avi); name a file: $0 FILE" >&2
    exit 1
  fi
  echo "demo: no camera found, using the sample clip $source_arg"
fi

mqtt_enabled=false
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  mqtt_enabled=true
  echo "demo: reporting to the MQTT broker on 127.0.0.1:1883"
fi

cat >"$OUT/config.yaml" <<EOF
# written by scripts/demo.sh; see config.yaml in the repository for every key
camera:
  name: demo
  source: $source_arg
  loop: $loop
  realtime: true
recording:
  path: $OUT/recordings
  segment_s: 30
  min_free_percent: 5
mqtt:
  enabled: $mqtt_enabled
  host: 127.0.0.1
  port: 1883
EOF

echo "demo: recording masked video to $OUT/recordings/demo/ (Ctrl-C stops cleanly)"
args=(run --config "$OUT/config.yaml" --regions "$OUT/regions.jsonl")
[ -n "${DEMO_SECONDS:-}" ] && args+=(--for "$DEMO_SECONDS")
set +e
trap '' INT  # Ctrl-C goes to the daemon, which finishes its segment; then the summary below
"$PY" -m daemon "${args[@]}"
code=$?
trap - INT
set -e
if [ -n "${SUDO_USER:-}" ]; then
  chown -R "$SUDO_USER": "$OUT" 2>/dev/null || true
fi
echo
echo "demo: protected segments (faces masked before anything was written):"
find "$OUT/recordings" -name '*.mp4' -printf '  %p  (%s bytes)\n' | sort
echo "demo: masked regions per frame: $OUT/regions.jsonl"
exit "$code"
