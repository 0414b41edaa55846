"""RTSP server for the stream sink: raw BGR frames on stdin out as H.264 over RTSP.

    /usr/bin/python3 services/sinks/rtsp_server.py --port 8554 --path /facetrack \
        --width 640 --height 480 --fps 30 [--bitrate 1500] [--host 127.0.0.1]

It runs under the *system* Python because GStreamer's RTSP server is reached through
PyGObject (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base/good/
ugly), which is built for Debian's interpreter, not for the project's venv. So it imports
nothing of the project: stdlib and gi only. The sink process (services/sinks/stream.py)
starts it and writes frames of exactly width*height*3 bytes to its stdin; closing stdin
stops it.

One encoder serves every client (a shared media): it exists only while somebody watches,
so frames that arrive with nobody watching are read and thrown away (no encoding). It
prints `rtsp server ready at rtsp://HOST:PORT/PATH` on stdout when it listens.
"""
from __future__ import annotations

import argparse
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(width: int, height: int, fps: int, bitrate: int) -> str:
    return (
        f"( appsrc name=src is-live=true do-timestamp=true format=time block=false max-bytes={width * height * 3 * 2} "
        f"caps=video/x-raw,format=BGR,width={width},height={height},framerate={fps}/1 "
        "! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 "
        "! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate} key-int-max={fps} threads=1 "
        "! video/x-h264,profile=constrained-baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


class FrameFeed:
    """Reads frames from stdin and pushes them into the appsrc of the current media, if any."""

    def __init__(self, frame_bytes: int, loop: GLib.MainLoop):
        self.frame_bytes = frame_bytes
        self.loop = loop
        self.lock = threading.Lock()
        self.appsrc = None

    def attach(self, appsrc) -> None:
        with self.lock:
            self.appsrc = appsrc

    def detach(self, *_args) -> None:
        with self.lock:
            self.appsrc = None

    def run(self) -> None:
        stdin = sys.stdin.buffer
        while True:
            data = stdin.read(self.frame_bytes)
            if len(data) < self.frame_bytes:  # stdin closed: the sink is gone
                break
            with self.lock:
                src = self.appsrc
            if src is not None:
                src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
        GLib.idle_add(self.loop.quit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="/facetrack")
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=1500, help="kbit/s")
    args = parser.parse_args()
    Gst.init(None)
    loop = GLib.MainLoop()
    feed = FrameFeed(args.width * args.height * 3, loop)

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.width, args.height, max(1, args.fps), args.bitrate))
    factory.set_shared(True)

    def configure(_factory, media):
        feed.attach(media.get_element().get_by_name_recurse_up("src"))
        media.connect("unprepared", feed.detach)

    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp server: cannot listen on {args.host}:{args.port}", file=sys.stderr, flush=True)
        return 1
    port = server.get_bound_port()
    print(f"rtsp server ready at rtsp://{args.host}:{port}{args.path}", flush=True)
    threading.Thread(target=feed.run, name="feed", daemon=True).start()
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
