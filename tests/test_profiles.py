"""Detection profiles fitted to the board: what an owner of a Pi relies on.

* A board that cannot carry the camera at full protection gets a cheaper profile, and says so
  (log warning, MQTT stats); one that cannot carry it at all is flagged "overloaded".
* What the owner set is never overridden: a fixed profile, or explicit tile keys.
* Unknown boards (x86, Jetson) keep full protection.
* The projection's numbers are the counted ones (bench/pi_model_counts.json).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from daemon.board import Board
from daemon.boardcost import BOARDS
from daemon.config import parse
from daemon.detect.config import DetectConfig, ScheduleConfig
from daemon.detect.people_config import PeopleConfig
from daemon.detect.profiles import Camera, choose, concrete
from daemon.mqtt.discovery import Topics, entities

REPO = Path(__file__).resolve().parent.parent
PI5, PI4 = Board("pi5", "Raspberry Pi 5 Model B Rev 1.0"), Board("pi4", "Raspberry Pi 4 Model B")
PC = Board("generic", "")


def test_a_pi5_keeps_full_at_720p25_and_drops_to_what_fits_at_1080p25() -> None:
    out, c = choose(DetectConfig(), PI5, Camera(1280, 720, 25), 500)
    assert c.profile == "full" and not c.overloaded, c.reason
    assert out.schedule.tile_scales == [1.0] and out.people.tiles == 2 and out.threads == 3
    out, c = choose(DetectConfig(), PI5, Camera(1920, 1080, 25), 500)
    assert c.profile == "balanced" and not c.overloaded
    assert out.schedule.tile_scales == [0.6]
    assert c.reason.startswith("full: a detector run in a crowd takes")
    assert "balanced: projected" in c.reason
    assert c.projection is not None and c.projection.share <= 0.70
    assert c.projection.share_crowd > c.projection.share  # said, not hidden


def test_the_fix_the_owner_is_told_works_a_lower_rate_or_size() -> None:
    assert choose(DetectConfig(), PI4, Camera(1920, 1080, 25), 500)[1].overloaded
    assert not choose(DetectConfig(), PI4, Camera(1920, 1080, 12), 500)[1].overloaded
    assert not choose(DetectConfig(), PI4, Camera(1280, 720, 25), 500)[1].overloaded
    assert choose(DetectConfig(), PI5, Camera(1280, 720, 25), 500)[1].profile == "full"


def test_a_pi4_at_1080p25_is_overloaded_even_with_the_lightest_profile() -> None:
    out, c = choose(DetectConfig(), PI4, Camera(1920, 1080, 25), 500)
    assert c.profile == "light" and c.overloaded
    assert out.schedule.tile_scales == [] and out.people.tiles == 1
    assert c.stats()["board_overloaded"] is True
    assert "full: a detector run in a crowd takes" in c.reason and "light: needs" in c.reason


def test_the_hardware_codecs_and_a_raw_camera_lighten_the_pi4s_load() -> None:
    rtsp = choose(DetectConfig(), PI4, Camera(1920, 1080, 25), 500)[1]
    hw = choose(DetectConfig(), PI4, Camera(1920, 1080, 25, decode=False, hw_encode=True), 500)[1]
    assert rtsp.projection and hw.projection
    assert hw.projection.share < rtsp.projection.share - 0.2


def test_an_unknown_board_keeps_full_protection() -> None:
    out, c = choose(DetectConfig(), PC, Camera(1920, 1080, 25), 500)
    assert c.profile == "full" and not c.overloaded and c.projection is None
    assert out.schedule.tile_scales == [1.0]


def test_what_the_owner_set_wins() -> None:
    fixed = DetectConfig(schedule=ScheduleConfig(profile="full"))
    out, c = choose(fixed, PI4, Camera(1920, 1080, 25), 500)
    assert c.profile == "full" and c.overloaded  # kept, and flagged
    assert out.schedule.tile_scales == [1.0]
    explicit = DetectConfig(
        schedule=ScheduleConfig(tile_scales=[0.8]), people=PeopleConfig(tiles=3), threads=4
    )
    out, c = choose(explicit, PI5, Camera(1920, 1080, 25), 500)
    assert c.profile == "custom"
    assert (out.schedule.tile_scales, out.people.tiles, out.threads) == ([0.8], 3, 4)
    # one key set: the profile fills only the other
    half = DetectConfig(schedule=ScheduleConfig(tile_scales=[1.0]))
    out, c = choose(half, PI4, Camera(1920, 1080, 25), 500)
    assert out.schedule.tile_scales == [1.0] and out.people.tiles == 1


def test_offline_tools_get_the_named_profile_and_auto_means_full() -> None:
    assert concrete(DetectConfig()).schedule.tile_scales == [1.0]
    light = DetectConfig(schedule=ScheduleConfig(profile="light"))
    assert concrete(light).schedule.tile_scales == []
    assert concrete(light).people.tiles == 1


def test_the_projection_uses_the_counted_instructions() -> None:
    counts = json.loads((REPO / "bench" / "pi_model_counts.json").read_text())
    scenes = {"crowd": counts["counts"], "one_person": counts["scenes"]["one_person"]["counts"]}
    fields = (("decode", "decode"), ("colour", "colour"), ("track+mask", "track_mask"),
              ("encode", "encode"))  # fmt: skip
    for kind, cpu in (("pi5", "a76"), ("pi4", "a72")):
        cost = BOARDS[kind]
        for i, res in enumerate(("720", "1080")):
            c = counts["counts"][cpu][res]
            runs = c["faces"]["face_runs_per_frame"]
            assert cost.face_run[i] == pytest.approx(c["faces"]["insn"] / runs / 1e6, abs=0.05)
            assert cost.people_window[i] == pytest.approx(c["people"]["insn"] / 5 / 1e6, abs=0.05)
            for name, by_cpu in scenes.items():
                sc, got = by_cpu[cpu][res], cost.scenes[name]
                assert got.face_runs[i] == sc["faces"]["face_runs_per_frame"], (kind, name)
                for stage, field in fields:
                    counted = sc[stage]["insn"] / 1e6
                    assert getattr(got, field)[i] == pytest.approx(counted, abs=0.05), (name, stage)


def _run_service(tmp_path: Path, data_dir: Path, board: Board) -> tuple[Any, list[dict]]:
    from daemon.service.daemon import Service

    cfg = parse(
        "camera:\n  name: prof\n  loop: false\n"
        f"recording:\n  path: {tmp_path / 'rec'}\n  min_free_percent: 0\n"
        "mqtt:\n  enabled: false\n"
    )
    clip = data_dir / "videos" / "facenet-pytorch_video.mp4"  # 1920x1080 at 25 fps
    service = Service(cfg, source=str(clip), fast=True, board=board)
    stats: list[dict] = []

    class Stats:
        def on_frame(self, frame: Any, faces: int) -> None:
            pass

        def on_event(self, event: dict) -> None:
            pass

        def on_stats(self, s: dict) -> None:
            stats.append(s)

    service.add_listener(Stats())
    assert service.run(120) == 0
    stats.append(service.pipeline.stats())
    return service, stats


def test_the_service_fits_the_profile_at_the_first_frame_and_reports_it(
    tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        service, stats = _run_service(tmp_path, data_dir, PI4)
    last = stats[-1]
    assert last["detect_profile"] == "light" and last["board_overloaded"] is True
    assert last["projected_cpu_percent"] > 70
    assert "1920x1080" in last["detect_profile_reason"]
    # the detector really ran the light schedule: the whole frame, no tiles
    assert service._detector.windows(1920, 1080) == 1
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("cannot carry this camera" in r.getMessage() for r in warned)
    # every key the Home Assistant entities read from the stats is in them (or a template
    # error would be logged by Home Assistant)
    keys = set()
    for _, _, conf in entities(Topics("veilcam/prof")):
        if conf.get("state_topic") == "veilcam/prof/stats":
            for tpl in (conf.get("value_template", ""), conf.get("json_attributes_template", "")):
                keys |= set(re.findall(r"value_json\.(\w+)", tpl))
    bridge_own = {"events_dropped"}  # the MQTT bridge adds its own count
    assert keys and keys - bridge_own <= set(last), keys - bridge_own - set(last)


def test_on_an_unknown_board_the_service_keeps_full(tmp_path: Path, data_dir: Path) -> None:
    service, stats = _run_service(tmp_path, data_dir, PC)
    last = stats[-1]
    assert last["detect_profile"] == "full" and last["projected_cpu_percent"] is None
    assert "full: no speed projection for this board" in last["detect_profile_reason"]
    # (board_overloaded may still be on here: it is also measured, and a loaded 2-core box
    # can take more than half the deadline per 1080p run)
    assert service._detector.windows(1920, 1080) == 13


def test_check_config_tells_the_owner_what_a_board_and_camera_would_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("camera:\n  width: 1920\n  height: 1080\n  fps: 25\n")
    assert main(["check-config", str(cfg), "--board", "pi4"]) == 0
    out = capsys.readouterr().out
    assert "detection profile: light (BOARD OVERLOADED" in out and "1920x1080 at 25 fps" in out
    assert main(["check-config", str(cfg), "--board", "pi5", "--camera", "1280x720@25"]) == 0
    assert "detection profile: full (full: projected" in capsys.readouterr().out
    assert main(["check-config", str(cfg), "--camera", "wide"]) == 2
    assert "expected WxH" in capsys.readouterr().err


def test_systemctl_status_says_a_lowered_profile_and_an_overloaded_board() -> None:
    from daemon.service.notify import StatusListener

    said: list[str] = []

    class Notifier:
        def status(self, text: str) -> None:
            said.append(text)

    listener = StatusListener(Notifier())  # type: ignore[arg-type]
    base = {"fps": 25.0, "faces": 1, "source_state": "ok", "recording": True}
    listener.on_stats({**base, "detect_profile": "full", "board_overloaded": False})
    listener.on_stats({**base, "detect_profile": "light", "board_overloaded": True})
    assert "profile" not in said[0] and "OVERLOADED" not in said[0]
    assert "profile light" in said[1] and "BOARD OVERLOADED" in said[1]
