"""veilcam.service sets MemoryDenyWriteExecute=yes: the runtime must work without W+X memory.

A child process turns on the kernel's memory-deny-write-execute (``PR_SET_MDWE``, what systemd
uses where the kernel has it), shows that a writable+executable mapping is now refused, and
then runs what the daemon runs: a face model from models/ through LiteRT with XNNPACK, OpenCV,
an H.264 encode through PyAV, and a libffi callback (ctypes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import ctypes, io, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE failed (errno {ctypes.get_errno()}; needs Linux >= 6.3)")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a W+X mapping was allowed: MDWE is not in force")
except PermissionError:
    print("wx refused")

import av, cv2, numpy as np
from ai_edge_litert.interpreter import Interpreter

it = Interpreter(model_path=sys.argv[1], num_threads=2)
it.allocate_tensors()
inp = it.get_input_details()[0]
rng = np.random.default_rng(0)
if np.issubdtype(inp["dtype"], np.floating):
    x = rng.random(inp["shape"]).astype(inp["dtype"])
else:
    x = rng.integers(0, 127, inp["shape"]).astype(inp["dtype"])
for _ in range(2):
    it.set_tensor(inp["index"], x)
    it.invoke()
out = it.get_tensor(it.get_output_details()[0]["index"])
print("litert", out.shape)

img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
img = cv2.GaussianBlur(img, (31, 31), 0)
buf = io.BytesIO()
with av.open(buf, "w", format="mp4") as c:
    s = c.add_stream("libx264", rate=10)
    s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
    for _ in range(5):
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
print("encoded", len(buf.getvalue()) > 0)

cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v + 1)
print("callback", cb(41))
"""


def test_runtime_works_without_writable_executable_memory() -> None:
    models = sorted((REPO / "models").glob("*.tflite"))
    assert models, "no .tflite model in models/ (the detector models are part of the repository)"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(models[0])],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "wx refused"
    assert lines[1].startswith("litert (")
    assert lines[2:] == ["encoded True", "callback 42"]
