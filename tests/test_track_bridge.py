"""Rule 3 whatever ``track.hold_s`` says: the tracker bridges two detections of a face.

``hold_s: 0`` used to leave every frame between two detections unmasked (68 of 77 frames of
again.mkv with ``--fast``), at start and after a SIGHUP alike. Both run the real daemon.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests._live import wait_for
from tests.test_service import NotifySocket

REPO = Path(__file__).resolve().parent.parent
CLIP = ("videos", "intel_asl_gestures", "again.mkv")  # 77 frames at 30 fps, one signer


def config(tmp_path: Path, track: str, camera: str = "") -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"camera:\n  name: bridge\n{camera}"
        f"recording:\n  path: {tmp_path / 'rec'}\n  min_free_percent: 0\n"
        f"mqtt:\n  enabled: false\n{track}"
    )
    return cfg


def face_boxes(regions: Path) -> list[list[list[int]]]:
    """Per recorded frame, the boxes of its face regions."""
    recs = [json.loads(line) for line in regions.read_text().splitlines()]
    assert not any(r.get("obscured") for r in recs)  # --fast: no frame is late
    return [[r["box"] for r in rec["regions"] if r["label"] == "face"] for rec in recs]


def covers(box: list[int], x: float, y: float) -> bool:
    return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


def run_fast(tmp_path: Path, data_dir: Path, track: str) -> list[list[list[int]]]:
    cfg = config(tmp_path, track)
    regions = tmp_path / f"regions{len(list(tmp_path.glob('regions*')))}.jsonl"
    p = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(cfg), "--fast",
         "--source", str(data_dir.joinpath(*CLIP)), "--regions", str(regions)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return face_boxes(regions)


def test_hold_0_masks_every_frame_between_detections(tmp_path: Path, data_dir: Path) -> None:
    reference = run_fast(tmp_path, data_dir, "")  # hold_s 2.0: the face is masked throughout
    held = run_fast(tmp_path, data_dir, "track:\n  hold_s: 0\n")
    assert len(held) == len(reference) == 77
    seen = [i for i, boxes in enumerate(reference) if boxes]
    gaps = [
        i
        for i in range(seen[0], seen[-1] + 1)
        # the face (centre of the reference mask) lies under a mask with hold_s 0 as well
        if not any(
            covers(b, r[0] + r[2] / 2, r[1] + r[3] / 2) for r in reference[i] for b in held[i]
        )
    ]
    assert gaps == [], f"{len(gaps)} frames with the face unmasked: {gaps}"


def test_sighup_to_hold_0_opens_no_gap(tmp_path: Path, data_dir: Path) -> None:
    """The reload goes through the service's real path (SIGHUP, load, apply in the pipeline)."""
    cfg = config(tmp_path, "", camera="  loop: true\n  realtime: true\n")
    regions = tmp_path / "regions.jsonl"
    ns = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(ns.path), "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_USEC", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(cfg),
         "--source", str(data_dir.joinpath(*CLIP)), "--regions", str(regions)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def lines() -> int:
        return regions.read_text().count("\n") if regions.exists() else 0

    try:
        wait_for(lambda: lines() >= 30, 60, "frames before the reload")
        cfg.write_text(cfg.read_text() + "track:\n  hold_s: 0\n")
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: ns.times("RELOADING=1"), 30, "RELOADING=1")
        reloading = ns.times("RELOADING=1")[0]
        wait_for(lambda: [t for t in ns.times("READY=1") if t > reloading], 30, "reloaded")
        after = lines() + 3  # frames already in the recorder's queue went out before
        wait_for(lambda: lines() >= after + 150, 60, "5 s of frames after the reload")
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        ns.close()
    assert p.returncode == 0, err
    assert "config reloaded" in err and "changed=track" in err
    recs = [json.loads(x) for x in regions.read_text().splitlines()][after:]
    # a frame blanked by the gate (CPU contention) shows nothing either; every other has a mask
    bare = [r["frame"] for r in recs if not r.get("obscured") and not r["regions"]]
    masked = [r for r in recs if r["regions"]]
    assert bare == [], f"{len(bare)} of {len(recs)} frames without a face mask: {bare[:20]}"
    assert len(masked) >= 100, "too few masked frames to tell"
