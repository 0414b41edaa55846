"""A third-party sink: raw pyzmq + msgpack + mmap, no facetrack code (docs/pipeline.md).

    python examples/minimal_sink.py [BUS (ipc://run/bus-sub.sock)] [SHM_DIR (/dev/shm)]
Prints one JSON line per frame with its tracks: frame_id, source_pos, mean pixel value, tracks.
"""
import json
import mmap
import struct
import sys
import msgpack
import zmq

bus = sys.argv[1] if len(sys.argv) > 1 else "ipc://run/bus-sub.sock"
shm_dir = sys.argv[2] if len(sys.argv) > 2 else "/dev/shm"
sub = zmq.Context().socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 50)                 # keep up or lose messages, never queue a backlog
sub.connect(bus)
for topic in (b"frame", b"tracks"):
    sub.setsockopt(zmq.SUBSCRIBE, topic)
frames, ring = {}, None
while True:
    topic, body = sub.recv_multipart()
    msg = msgpack.unpackb(body)
    if not isinstance(msg, dict) or msg.get("v") != 1:
        continue                               # a version this sink does not know
    if topic == b"frame":
        frames[msg["frame_id"]] = msg          # wait for this frame's tracks
        frames.pop(msg["frame_id"] - 64, None)
        continue
    f = frames.pop(msg["frame_id"], None)
    if f is None:
        continue
    if ring is None or struct.unpack_from("<Q", ring, 36)[0] != f["ring_id"]:  # (re)attach
        try:
            with open(f"{shm_dir}/facetrack-{f['stack']}", "r+b") as fh:
                ring = mmap.mmap(fh.fileno(), 0)
        except FileNotFoundError:              # capture is restarting
            continue
    base = 64 + f["slot"] * struct.unpack_from("<Q", ring, 16)[0]  # header: slot bytes at 16
    pixels = ring[base + 64:base + 64 + f["width"] * f["height"] * 3]  # BGR rows, a copy
    if struct.unpack_from("<Q", ring, base)[0] != f["seq"]:
        continue                               # overwritten during the copy: throw it away
    print(json.dumps({"frame_id": f["frame_id"], "source_pos": f["source_pos"], "mean": sum(pixels) / len(pixels),
                      "tracks": [[t["id"], t["box"], t["state"]] for t in msg["tracks"]]}), flush=True)
