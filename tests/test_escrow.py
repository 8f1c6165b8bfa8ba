"""Issue 12: escrow. Real keys from ``veilcam keygen``, the real daemon, ``veilcam reveal``.

What the owner depends on: a reveal with the key gives the faces back (>= 35 dB); without the
key, or with another, nothing is revealed and the error says why; no file the daemon wrote holds
a raw row of a face; a ``kill -9`` loses no complete chunk; one damaged chunk loses only itself;
a bad key in the config is refused before anything is recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from daemon.escrow import sidecar
from daemon.media.decode import bgr
from tests._live import probe, wait_for
from tests.test_run import REPO, VEILCAM, finish, start, write_config

CLIP = "intel_asl_gestures/again.mkv"  # 77 frames, one signer's face throughout
PASS = "correct horse battery staple"


def veilcam(*args: str, passphrase: str | None = PASS) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VEILCAM_PASSPHRASE"}
    if passphrase is not None:
        env["VEILCAM_PASSPHRASE"] = passphrase
    return subprocess.run(
        [*VEILCAM, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def reveal(
    seg: Path, key: Path, out: Path, *extra: str, **kw: str
) -> subprocess.CompletedProcess[str]:
    return veilcam("reveal", str(seg), "--key", str(key), "--output", str(out), *extra, **kw)


def keygen(out: Path) -> Path:
    r = veilcam("keygen", "--out", str(out), "--kdf", "interactive")
    assert r.returncode == 0, r.stderr
    assert "fingerprint: SHA256:" in r.stdout
    return out


def escrow_config(tmp: Path, rec: Path, pub: Path, extra: str = "") -> Path:
    return write_config(
        tmp / "c.yaml",
        rec,
        f"escrow:\n  enabled: true\n  public_key_file: {pub}\n{extra}",
    )


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [bgr(f) for f in c.decode(video=0)]  # as the daemon converts them


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict:
    tmp = tmp_path_factory.mktemp("escrow")
    keys = keygen(tmp / "owner")
    rec = tmp / "rec"
    cfg = escrow_config(tmp, rec, keys / "escrow.pub")
    regions = tmp / "regions.jsonl"
    clip = data_dir / "videos" / CLIP
    code, err = finish(
        start(["--config", str(cfg), "--source", str(clip), "--fast", "--regions", str(regions)])
    )
    assert code == 0, err[-2000:]
    segs = sorted(rec.rglob("*.mp4"))
    assert len(segs) >= 2 and all(sidecar.sidecar_path(s).exists() for s in segs)
    # a later segment begins mid-group (its first frames were sealed before it opened): the
    # frames of the group it needs came with it, and the reveal below must use them
    assert any(r.lead_in for s in segs[1:] for r in sidecar.read(sidecar.sidecar_path(s)).frames)
    lines = [json.loads(x) for x in regions.read_text().splitlines()]
    return {"tmp": tmp, "keys": keys, "rec": rec, "segs": segs, "clip": clip, "regions": lines}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(cv2.PSNR(a, b))


def test_reveal_restores_every_sealed_face(recorded: dict) -> None:
    src = frames_of(recorded["clip"])
    by_frame = {x["frame"]: x for x in recorded["regions"]}
    first = 0
    checked = unchanged = 0
    for seg in recorded["segs"]:
        out = recorded["tmp"] / f"clear_{seg.stem}.mp4"
        r = reveal(seg, recorded["keys"] / "escrow.key", out)
        assert r.returncode == 0, r.stderr
        masked, clear = frames_of(seg), frames_of(out)
        assert len(clear) == len(masked)
        for i, (m, c) in enumerate(zip(masked, clear, strict=True)):
            faces = [g for g in by_frame[first + i]["regions"] if g["label"] == "face"]
            for g in faces:
                x, y, w, h = g["box"]
                assert psnr(c[y : y + h, x : x + w], src[first + i][y : y + h, x : x + w]) >= 35
                # and it was hidden in the recording: the reveal really restored it
                assert psnr(m[y : y + h, x : x + w], src[first + i][y : y + h, x : x + w]) < 30
                checked += 1
            if not faces:  # nothing sealed: the frame is the masked one (re-encoded only)
                assert psnr(c, m) >= 40
                unchanged += 1
        first += len(masked)
    assert checked >= 70, checked
    audit = [
        json.loads(x) for x in (recorded["tmp"] / "reveal-audit.jsonl").read_text().splitlines()
    ]
    assert len(audit) == len(recorded["segs"])
    a = audit[0]
    assert len(a["segment_sha256"]) == 64 and a["key_fingerprint"].startswith("SHA256:")
    assert a["regions_revealed"] > 0 and a["revealed_at"] and a["problems"] == []


def test_reveal_of_a_time_range_and_track_reveals_only_that(recorded: dict) -> None:
    seg = recorded["segs"][0]
    out = recorded["tmp"] / "part.mp4"
    r = reveal(
        seg, recorded["keys"] / "escrow.key", out, "--from", "0.5", "--to", "1.0", "--track", "999"
    )
    assert r.returncode == 0, r.stderr
    assert "0 regions revealed" in r.stdout  # no track 999: nothing comes back
    masked, clear = frames_of(seg), frames_of(out)
    assert min(psnr(c, m) for c, m in zip(clear, masked, strict=True)) >= 40
    r = reveal(seg, recorded["keys"] / "escrow.key", out, "--from", "0.5", "--to", "1.0")
    assert r.returncode == 0, r.stderr
    audit = json.loads((recorded["tmp"] / "reveal-audit.jsonl").read_text().splitlines()[-1])
    assert audit["from_s"] == 0.5 and audit["to_s"] == 1.0
    assert 10 <= audit["frames_revealed"] <= 17  # half a second at 30 fps, ends included


def test_wrong_key_or_passphrase_reveals_nothing(recorded: dict) -> None:
    other = keygen(recorded["tmp"] / "stranger")
    seg = recorded["segs"][0]
    out = recorded["tmp"] / "stolen.mp4"
    r = reveal(seg, other / "escrow.key", out)
    assert r.returncode == 2 and "cannot open" in r.stderr and "sealed to SHA256:" in r.stderr
    assert not out.exists()
    r = reveal(seg, recorded["keys"] / "escrow.key", out, passphrase="guess")
    assert r.returncode == 2 and "wrong passphrase" in r.stderr
    assert not out.exists()
    # the box's own files (public key, segment, sidecar) are no key at all
    r = reveal(seg, recorded["keys"] / "escrow.pub", out)
    assert r.returncode == 2 and "not a veilcam escrow private key" in r.stderr


def test_no_file_the_daemon_wrote_holds_a_raw_face_row(recorded: dict) -> None:
    src = frames_of(recorded["clip"])
    rows: list[bytes] = []
    for x in recorded["regions"][::5]:
        img = src[x["frame"]]
        luma = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)[: img.shape[0]]
        for g in x["regions"]:
            bx, by, w, h = g["box"]
            for yy in (by + h // 3, by + h // 2):
                rows.append(luma[yy, bx + w // 4 : bx + w // 4 + 24].tobytes())
                rows.append(img[yy, bx + w // 4 : bx + w // 4 + 8].tobytes())  # BGR too
    assert len(rows) > 40
    written = [f for f in recorded["tmp"].rglob("*") if f.is_file() and "rec" in f.parts]
    assert any(f.suffix == ".sealed" for f in written)

    def leaks(blob: bytes) -> int:
        return sum(1 for r in rows if r in blob)

    # the scan finds what it looks for: a raw dump of one frame trips it
    assert leaks(cv2.cvtColor(src[0], cv2.COLOR_BGR2YUV_I420).tobytes() + src[0].tobytes()) > 0
    for f in written:
        assert leaks(f.read_bytes()) == 0, f


def test_a_flipped_byte_costs_only_its_group_and_is_named(recorded: dict, tmp_path: Path) -> None:
    seg = recorded["segs"][0]
    side = sidecar.read(sidecar.sidecar_path(seg))
    assert side.complete and side.chunks >= 3  # chunks follow the 0.5 s fragments
    frames = [r for r in side.frames if not r.lead_in]
    target = next(r for r in frames if r.chunk == 1 and not r.flags & sidecar.KEYFRAME)
    # the frames that need it: the rest of its H.264 group, up to the next keyframe
    after = frames[frames.index(target) + 1 :]
    group = 1 + next((i for i, r in enumerate(after) if r.flags & sidecar.KEYFRAME), len(after))
    assert group < len(frames) // 2
    data = bytearray(sidecar.sidecar_path(seg).read_bytes())
    data[data.find(target.ciphertext) + 40] ^= 0x01
    copy = tmp_path / seg.name
    copy.write_bytes(seg.read_bytes())
    sidecar.sidecar_path(copy).write_bytes(bytes(data))
    out = tmp_path / "clear.mp4"
    r = reveal(copy, recorded["keys"] / "escrow.key", out)
    assert r.returncode == 1, r.stderr  # revealed, with a problem to report
    assert f"chunk 1, frame {target.frame_no}: fails authentication" in r.stderr
    audit = json.loads((tmp_path / "reveal-audit.jsonl").read_text())
    assert audit["frames_revealed"] == len(frames) - group
    # the frames before and after the group are the owner's faces, not the masks
    clear, src = frames_of(out), frames_of(recorded["clip"])
    by_frame = {x["frame"]: x for x in recorded["regions"]}
    for f in (frames[0].frame_no, frames[-1].frame_no):
        x, y, w, h = next(g for g in by_frame[f]["regions"] if g["label"] == "face")["box"]
        assert psnr(clear[f][y : y + h, x : x + w], src[f][y : y + h, x : x + w]) >= 35


def test_kill_9_mid_segment_keeps_every_complete_chunk(tmp_path: Path, data_dir: Path) -> None:
    keys = keygen(tmp_path / "owner")
    rec = tmp_path / "rec"
    cfg = escrow_config(tmp_path, rec, keys / "escrow.pub")
    cfg.write_text(cfg.read_text().replace("segment_s: 2", "segment_s: 600"))
    clip = data_dir / "videos" / "intel_one-by-one-person-detection.mp4"  # 10 fps, people
    p = start(["--config", str(cfg), "--source", str(clip)])
    try:

        def chunks() -> int:
            sealed = list(rec.rglob("*.sealed"))
            if not sealed:
                return 0
            s = sidecar.read(sealed[0])
            return s.chunks if len(s.frames) >= 10 else 0

        wait_for(lambda: chunks() >= 4, 180, "four chunks of sealed faces")
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
    seg = next(rec.rglob("*.mp4"))
    n, err = probe(seg)
    assert n > 0 and err == ""
    side = sidecar.read(sidecar.sidecar_path(seg))
    assert not side.complete
    out = tmp_path / "clear.mp4"
    r = reveal(seg, keys / "escrow.key", out)
    assert "fails authentication" not in r.stderr, r.stderr
    assert "no end record" in r.stderr  # said, not hidden
    audit = json.loads((tmp_path / "reveal-audit.jsonl").read_text())
    playable = [f for f in side.frames if f.frame_no < n]
    assert len(playable) >= 10 and audit["frames_revealed"] == len(playable)


@pytest.mark.parametrize(
    ("key_text", "message"),
    [
        (None, "cannot read"),
        ("not a key\n", "is not a veilcam escrow public key"),
        ("VEILCAM-ESCROW-PUBLIC-KEY-1 AAAA\n", "has 3 bytes, not 32"),
    ],
)
def test_escrow_with_a_bad_key_is_a_config_error(
    tmp_path: Path, key_text: str | None, message: str
) -> None:
    pub = tmp_path / "escrow.pub"
    if key_text is not None:
        pub.write_text(key_text)
    rec = tmp_path / "rec"
    cfg = escrow_config(tmp_path, rec, pub)
    r = veilcam("check-config", str(cfg))
    line = cfg.read_text().splitlines().index(f"  public_key_file: {pub}") + 1
    assert r.returncode == 1
    assert f"{cfg}:{line}: escrow.public_key_file: " in r.stderr and message in r.stderr
    code, err = finish(start(["--config", str(cfg), "--fast"]))
    assert code == 2 and message in err
    assert not list(rec.rglob("*.mp4"))  # nothing recorded "for now" without the seal


def test_a_private_key_is_refused_in_the_config_and_warned_about_beside_it(
    tmp_path: Path,
) -> None:
    keys = keygen(tmp_path / "owner")
    armour = (keys / "escrow.key").read_text()
    cfg = escrow_config(tmp_path, tmp_path / "rec", keys / "escrow.key")  # the wrong half
    r = veilcam("check-config", str(cfg))
    assert r.returncode == 1 and "escrow.public_key_file: " in r.stderr
    assert "PRIVATE key" in r.stderr
    pasted = tmp_path / "pasted.yaml"
    pasted.write_text(
        "camera:\n  name: cam\nmqtt:\n  enabled: false\n  password: |\n"
        + "".join(f"    {ln}\n" for ln in armour.splitlines())
    )
    r = veilcam("check-config", str(pasted))
    assert r.returncode == 1
    assert f"{pasted}:5: mqtt.password: an escrow PRIVATE key must never be on the box" in r.stderr
    good = escrow_config(keys, tmp_path / "rec", keys / "escrow.pub")  # beside escrow.key
    r = veilcam("check-config", str(good))
    assert r.returncode == 0, r.stderr
    assert f"warning: {keys / 'escrow.key'} holds an escrow PRIVATE key" in r.stderr


def test_keygen_refuses_the_box_and_never_overwrites(tmp_path: Path) -> None:
    r = veilcam("keygen", "--out", "/etc/veilcam/keys")
    assert r.returncode == 2 and "box's own directory" in r.stderr
    keys = keygen(tmp_path / "owner")
    before = (keys / "escrow.key").read_bytes()
    r = veilcam("keygen", "--out", str(keys), "--kdf", "interactive")
    assert r.returncode == 1 and "not overwriting" in r.stderr
    assert (keys / "escrow.key").read_bytes() == before
    assert (keys / "escrow.key").stat().st_mode & 0o077 == 0


def test_retention_deletes_the_sealed_file_with_its_segment(tmp_path: Path) -> None:
    from daemon.record import retention
    from daemon.record.config import RecordingConfig

    cam = tmp_path / "cam"
    old = cam / "2020-01-01" / "cam_2020-01-01_00-00-00.mp4"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"v" * 1000)
    sidecar.sidecar_path(old).write_bytes(b"s" * 500)
    assert retention.disk_usage(cam) == 1500  # the sidecar counts against the budget
    os.utime(old, (0, 0))
    deleted = retention.enforce(cam, RecordingConfig(path=tmp_path, min_free_percent=0))
    assert deleted == [old]
    assert not sidecar.sidecar_path(old).exists()


def test_a_deleted_open_segment_comes_back_with_its_sealed_file(
    tmp_path: Path, data_dir: Path
) -> None:
    import shutil

    keys = keygen(tmp_path / "owner")
    rec = tmp_path / "rec"
    cfg = escrow_config(tmp_path, rec, keys / "escrow.pub")
    cfg.write_text(cfg.read_text().replace("segment_s: 2", "segment_s: 600"))
    clip = data_dir / "videos" / "intel_asl_gestures" / "again.mkv"  # a face in every frame
    cfg.write_text(
        cfg.read_text().replace("camera:\n", f"camera:\n  source: {clip}\n  loop: true\n")
    )
    p = start(["--config", str(cfg)])
    try:
        first = wait_for(
            lambda: [f for f in rec.rglob("*.sealed") if f.stat().st_size > 20_000],
            120,
            "the first sidecar growing",
        )[0]
        shutil.rmtree(rec / "testcam")
        wait_for(lambda: first.exists() and len(list(rec.rglob("*.mp4"))) == 2, 60, "recovery")
    finally:
        p.send_signal(signal.SIGTERM)
        code, err = finish(p)
    assert code == 0, err[-2000:]
    seg = Path(str(first).removesuffix(".sealed"))
    side = sidecar.read(first)
    assert side.complete and len(side.frames) > 10
    r = reveal(seg, keys / "escrow.key", tmp_path / "c.mp4")
    assert r.returncode == 0, r.stderr
    audit = json.loads((tmp_path / "reveal-audit.jsonl").read_text())
    assert audit["frames_revealed"] >= 10


def test_bad_reveal_inputs_are_clear_errors(recorded: dict, tmp_path: Path) -> None:
    seg = recorded["segs"][0]
    key = recorded["keys"] / "escrow.key"
    r = veilcam(
        "reveal",
        str(seg),
        "--key",
        str(key),
        "--output",
        str(tmp_path / "o.mp4"),
        "--passphrase-file",
        str(tmp_path / "missing"),
    )
    assert r.returncode != 0 and "cannot read the passphrase" in r.stderr
    assert "Traceback" not in r.stderr
    r = reveal(seg, key, tmp_path / "no" / "such" / "dir" / "o.mp4")
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr
    copy = tmp_path / seg.name
    copy.write_bytes(seg.read_bytes())
    sidecar.sidecar_path(copy).write_bytes(sidecar.MAGIC + b"\x00\x00\x00\x02[]")
    r = reveal(copy, key, tmp_path / "o.mp4")
    assert r.returncode == 2 and "damaged header" in r.stderr and "Traceback" not in r.stderr


SUBME = {"ultrafast": 0, "superfast": 1, "veryfast": 2}  # x264's own per preset


@pytest.mark.parametrize("preset", sorted(SUBME))
def test_the_preset_reaches_the_encoder(preset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from nacl.public import PrivateKey

    from daemon.escrow import seal
    from daemon.escrow.config import EscrowConfig
    from daemon.regions import Region

    packets: list[bytes] = []
    encode = seal._Canvas.encode

    def spy(self, *args, **kw):  # the plain H.264 before it is sealed
        out = encode(self, *args, **kw)
        packets.extend(out)
        return out

    monkeypatch.setattr(seal._Canvas, "encode", spy)
    cfg = EscrowConfig(enabled=False, preset=preset)
    sealer = seal.Sealer(cfg, PrivateKey.generate().public_key)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    assert sealer.seal(image, [Region((40, 40, 64, 80))], 0, 0.0) is not None
    sei = b"".join(packets)  # x264 names its options in the first frame's SEI
    assert f" subme={SUBME[preset]} ".encode() in sei, sei[:400]


def test_a_non_default_preset_records_and_reveals_and_a_bad_one_is_named(
    tmp_path: Path, data_dir: Path
) -> None:
    keys = keygen(tmp_path / "owner")
    bad = escrow_config(tmp_path, tmp_path / "rec", keys / "escrow.pub", "  preset: placebo\n")
    line = bad.read_text().splitlines().index("  preset: placebo") + 1
    r = veilcam("check-config", str(bad))
    assert r.returncode == 1, r.stderr
    assert f"{bad}:{line}: escrow.preset: Input should be 'ultrafast'" in r.stderr
    rec = tmp_path / "rec"
    cfg = escrow_config(tmp_path, rec, keys / "escrow.pub", "  preset: veryfast\n")
    regions = tmp_path / "regions.jsonl"
    clip = data_dir / "videos" / CLIP
    code, err = finish(
        start(["--config", str(cfg), "--source", str(clip), "--fast", "--regions", str(regions)])
    )
    assert code == 0, err[-2000:]
    src = frames_of(clip)
    lines = [json.loads(x) for x in regions.read_text().splitlines()]
    first = checked = 0
    for seg in sorted(rec.rglob("*.mp4")):
        out = tmp_path / f"clear_{seg.stem}.mp4"
        r = reveal(seg, keys / "escrow.key", out)
        assert r.returncode == 0, r.stderr
        clear = frames_of(out)
        for i, c in enumerate(clear):
            line_ = lines[first + i]
            for g in line_["regions"]:
                if g["label"] == "face":
                    x, y, w, h = g["box"]
                    ref = src[line_["source"]][y : y + h, x : x + w]
                    assert psnr(c[y : y + h, x : x + w], ref) >= 35
                    checked += 1
        first += len(clear)
    assert checked >= 70, checked
