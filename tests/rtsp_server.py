"""A real RTSP server on loopback for the capture tests (Debian's gst-rtsp-server).

Run with the system Python, which has python3-gi (the venv may not):
``/usr/bin/python3 tests/rtsp_server.py PORT FILE|testsrc``. Prints ``READY`` when serving.
A file is decoded and re-encoded live (x264, zerolatency), looping; ``testsrc`` serves
videotestsrc. Stop it with SIGTERM (or SIGKILL to simulate a dead camera).
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, what = sys.argv[1], sys.argv[2]
    Gst.init(None)
    if what == "testsrc":
        src = "videotestsrc is-live=true pattern=ball"
        src += " ! video/x-raw,width=320,height=240,framerate=25/1"
    else:
        src = f"filesrc location={what} ! decodebin ! videoconvert ! videorate"
        src += " ! video/x-raw,framerate=25/1"
    launch = (
        f"( {src} ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    server.attach(None)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("READY", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
