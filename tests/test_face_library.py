"""The face library in a real browser, on a whole running stack (issue #26's "done when").

The shipped programs run under supervisord on `faces://3` (three views of one face) with the identity service on, the
live view behind credentials, and the MQTT sink on a real mosquitto. Headless Chromium,
driven over the DevTools protocol (cdp_support.py), opens the live page with the credentials
and names the unknown face through the page's own controls ("Name…", the name field, Save).
Then: the page shows the identity service's answer; /tracks.json and the MQTT
`tracks/identified` event carry the name for that track; a track that starts later (a face
coming back into the view) is named by the gallery within its first embeddings; the People page lists the person
with the enrolment thumbnail; "Add view" there enrols another face; "Rename" there renames the live tracks too; "Remove" there deletes their faces so that none of the
descriptor's bytes is left in the gallery's files (as test_gallery_secure_delete checks).
The doors of the new routes: 401 without credentials, 403 for a cross-origin POST, oversized
and malformed bodies and bad names refused and counted, no traceback, the page still served.
The test saves its screenshot of the live page as docs/img/face-library.png.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import sqlite3
import time

import pytest

from common.bus import Subscriber
from common.config import ROOT
from common.messages import Identity
from facetrack.stack import Stack
from mqtt_support import Collector, Mosquitto, free_port
from stack_support import wait_for
from test_gallery_secure_delete import gallery_bytes
from test_sink_browser import chromium_problem  # noqa: F401 (a fixture)

USER, PASSWORD = "ada", "correct horse"
NAME, RENAMED = "Eileen Collins", "Eileen M. Collins"
ANSWER = ("(() => { const n = document.getElementById('notice'); "  # the page's line once the answer came
          "return ['ok', 'err'].includes(n.className) ? n.className + ': ' + n.textContent : ''; })()")
SCREENSHOT = ROOT / "docs" / "img" / "face-library.png"
SLOW = 240  # seconds: model loads and a loaded 2-core machine; liveness only


def http(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         auth: bool = True) -> tuple[int, bytes]:
    """(status, body) of one request over a raw socket (Content-Length as given in `headers`, if any)."""
    head = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if auth:
        head["Authorization"] = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    if body is not None and "Content-Length" not in head:
        head["Content-Length"] = str(len(body))
    raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(raw.encode() + (body or b""))
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may answer and close before an oversized body is all sent
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:  # after the answer: the server closed with the unread body pending
            pass
    head_end = data.index(b"\r\n\r\n")
    return int(data.split(b" ", 2)[1]), data[head_end + 4:]


def tracks(port: int) -> list[dict]:
    try:
        status, body = http(port, "GET", "/tracks.json")
    except OSError:  # not listening yet
        return []
    return json.loads(body)["tracks"] if status == 200 else []


@pytest.mark.slow
def test_naming_a_face_on_the_page_names_it_everywhere(tmp_path, chromium_problem):  # noqa: F811
    if chromium_problem:
        pytest.fail(chromium_problem)
    from cdp_support import Browser

    users = tmp_path / "users"
    users.write_text(f"{USER}:{PASSWORD}\n")
    users.chmod(0o600)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    collector = Collector(broker.port, persistent=False)
    port = free_port()
    stack_id = f"lib{os.getpid()}"
    stack = Stack(tmp_path / "run", {
        "stack": {"id": stack_id},
        "capture": {"source": "faces://3"},
        "sink": {"http_port": port},
        "http": {"credentials_file": str(users)},
        "mqtt": {"port": broker.port},
    }, autostart={"identity": True, "sink-mqtt": True})
    gallery = stack.run_dir / "gallery.sqlite"
    browser = None
    try:
        stack.start(wait_for=("broker", "capture", "detector", "tracker", "sink", "identity", "sink-mqtt"), timeout=SLOW)
        origin = f"http://127.0.0.1:{port}"
        # The identity service has embedded the face and found nobody: the face is "unknown".
        unknown = wait_for(lambda: [t for t in tracks(port) if t.get("name") == "unknown"], SLOW,
                           interval=0.5, what="a track the identity service calls unknown")[0]

        browser = Browser(tmp_path)
        browser.headers({"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
        browser.go(origin + "/")
        track = browser.wait("(() => { const b = [...document.querySelectorAll('#faces .name-button')]"
                             ".find(b => b.textContent === 'Name…'); return b && b.dataset.track; })()",
                             SLOW, "an unknown face with a Name… button in the Faces panel")
        track_id = int(track.split("-")[1])  # the button names the track by its key: tracker run and id
        assert browser.wait("document.querySelector('#faces img')?.naturalWidth", 60, "the face's thumbnail") > 0
        browser.wait("document.getElementById('health').textContent.includes('fps')", 60, "the health strip")
        browser.click(f"#faces .name-button[data-track='{track}']")
        browser.type_into("#name-input", NAME)
        browser.click("#name-save")
        notice = browser.wait(ANSWER, SLOW, "the identity service's answer on the page")
        assert notice.startswith("ok: ") and f"enrolled as {NAME}" in notice, notice
        assert track_id == unknown["id"] or any(t["id"] == track_id for t in tracks(port))

        # Named everywhere within seconds (generous here): the tracks, the MQTT event, the page.
        wait_for(lambda: any(t["id"] == track_id and t.get("name") == NAME for t in tracks(port)), 60, interval=0.5,
                 what="/tracks.json names the track")
        collector.wait(lambda: any(e.get("track") == track and e.get("name") == NAME
                                   for e in collector.select("tracks/identified")), 60, what="MQTT track_identified")
        browser.wait(f"document.querySelector('#faces-{track} .who')?.textContent === {json.dumps(NAME)}", 60,
                     "the Faces panel shows the name")
        browser.screenshot(SCREENSHOT)

        # Faces leave the view and come back (faces://3 runs one past the frame edge; they cross):
        # a track that starts after the naming is named by the gallery, nobody naming it again.
        # Its first view may be a sliver at the frame edge, too poor to match ("unknown", as in
        # one run here: view quality 3.7, then named 0.5 s later): named within its first
        # embeddings, never anything else.
        known = max(t["id"] for t in tracks(port))
        identities = Subscriber(stack.config.bus.subscribe, [Identity.TOPIC], hwm=10000)
        names: dict[int, list[str]] = {}
        deadline = time.monotonic() + SLOW
        while time.monotonic() < deadline and not any(tid > known and NAME in n for tid, n in names.items()):
            msg = identities.recv(timeout_ms=500)
            if isinstance(msg, Identity) and (not names.get(msg.track_id) or names[msg.track_id][-1] != msg.name):
                names.setdefault(msg.track_id, []).append(msg.name)
        identities.close()
        new = {tid: n for tid, n in names.items() if tid > known}
        assert any(NAME in n for n in new.values()), names
        assert all(set(n) <= {NAME, "unknown"} and n[-1] == NAME for n in new.values() if NAME in n), new
        collector.wait(lambda: any(e.get("track_id", 0) > known and e.get("name") == NAME
                                   for e in collector.select("tracks/identified")), 60, what="MQTT names the later track")
        browser.wait("[...document.querySelectorAll('#recent .who')].some(e => e.textContent === "
                     f"{json.dumps(NAME)})", 60, "the named face in Recent")

        # People: listed with the enrolment thumbnail; removed there, securely.
        browser.go(origin + "/people")
        browser.wait(f"[...document.querySelectorAll('.person .who')].some(e => e.textContent.startsWith({json.dumps(NAME)}))",
                     60, "the person on the People page")
        assert browser.wait("document.querySelector('.person img')?.naturalWidth", 60, "the enrolment thumbnail") > 0
        browser.wait("document.querySelector('.person .recent-pick')?.options.length", 60, "faces to add a view from")
        browser.click(".person .add-view")  # another view, from the first face in the list
        notice = browser.wait(ANSWER, SLOW, "the answer to adding a view")
        assert notice.startswith("ok: ") and f"enrolled as {NAME} (2 face(s))" in notice, notice
        browser.wait(f"document.querySelector('.person .who')?.textContent === {json.dumps(NAME + ' (2 faces)')}", 60,
                     "two faces on the People page")
        browser.js("document.getElementById('notice').className = ''")
        with sqlite3.connect(gallery) as db:
            descriptors = [row[0] for row in db.execute("SELECT descriptor FROM faces WHERE name = ?", (NAME,))]
        assert len(descriptors) == 2
        assert descriptors and all(d in gallery_bytes(gallery) for d in descriptors)
        browser.type_into(".person .rename-input", RENAMED)
        browser.click(".person .rename")
        notice = browser.wait(ANSWER, SLOW, "the answer to the renaming")
        assert notice.startswith(f"ok: {NAME} renamed {RENAMED}"), notice
        browser.wait(f"document.querySelector('.person .who')?.textContent.startsWith({json.dumps(RENAMED)})", 60,
                     "the new name on the People page")
        wait_for(lambda: any(t.get("name") == RENAMED for t in tracks(port)), 60, interval=0.5,
                 what="/tracks.json has the new name")
        browser.js("document.getElementById('notice').className = ''")
        browser.click(".person .remove")
        browser.click(".person .remove")  # "Really remove …?"
        notice = browser.wait(ANSWER, SLOW, "the answer to the removal")
        assert notice.startswith("ok: removed"), notice
        after = gallery_bytes(gallery)
        assert not any(d in after for d in descriptors)
        assert NAME.encode() not in after and RENAMED.encode() not in after
        browser.wait("document.getElementById('people').textContent.startsWith('nobody enrolled')", 60,
                     "the People page empty")

        # The doors of the new routes.
        for method, path in (("GET", "/faces.json"), ("GET", "/events"), ("GET", "/people"), ("GET", "/people.json"),
                             ("GET", "/people/1.jpg"), ("GET", "/live.js"), ("POST", "/faces/name"),
                             ("POST", "/people/rename"), ("POST", "/people/remove")):
            assert http(port, method, path, b"{}" if method == "POST" else None, auth=False)[0] == 401, path
        json_from = lambda o: {"Content-Type": "application/json", "Origin": o}  # noqa: E731
        good = json.dumps({"track": track, "name": NAME}).encode()
        refusals = {
            "cross-origin": (http(port, "POST", "/faces/name", good, json_from("http://evil.example")), 403),
            "no origin": (http(port, "POST", "/faces/name", good, {"Content-Type": "application/json"}), 403),
            "cross-site fetch": (http(port, "POST", "/faces/name", good,
                                      {**json_from(origin), "Sec-Fetch-Site": "cross-site"}), 403),
            "a form": (http(port, "POST", "/faces/name", b"name=x", {"Origin": origin,
                                                                      "Content-Type": "text/plain"}), 415),
            "oversized": (http(port, "POST", "/faces/name", b"{" + b" " * 100_000 + b"}", json_from(origin)), 413),
            "no length": (http(port, "POST", "/faces/name", b"", {**json_from(origin), "Content-Length": "x"}), 411),
            "malformed": (http(port, "POST", "/faces/name", b'{"track_id": 1, "na', json_from(origin)), 400),
            "nested": (http(port, "POST", "/people/remove", b"[" * 2000 + b"]" * 2000, json_from(origin)), 400),
            "not an object": (http(port, "POST", "/people/remove", b"[1]", json_from(origin)), 400),
            "bad name": (http(port, "POST", "/faces/name", json.dumps({"track": track, "name": "<script>"}).encode(),
                              json_from(origin)), 400),
            "long name": (http(port, "POST", "/people/rename", json.dumps({"name": NAME, "new_name": "x" * 41}).encode(),
                               json_from(origin)), 400),
            "reserved name": (http(port, "POST", "/faces/name", json.dumps({"track": track, "name": "Unknown"})
                                   .encode(), json_from(origin)), 400),
            "bad track": (http(port, "POST", "/faces/name", json.dumps({"track": "1", "name": NAME}).encode(),
                               json_from(origin)), 400),
            "a bare id": (http(port, "POST", "/faces/name", json.dumps({"track_id": track_id, "name": NAME}).encode(),
                               json_from(origin)), 400),  # names no tracker run: refused
        }
        for what, ((status, body), expected) in refusals.items():
            assert status == expected, (what, status, body[:200])
            assert len(body.splitlines()) == 1, (what, body)
        assert "not allowed" in json.loads(refusals["bad name"][0][1])["error"]
        assert http(port, "GET", "/tracks.json")[0] == 200 and http(port, "GET", "/")[0] == 200
        assert http(port, "GET", "/people.json")[1] == b'{"people": []}'
        watch = Subscriber(stack.config.bus.subscribe, [b"metrics"], hwm=1000)
        deadline = time.monotonic() + 60
        extra: dict = {}
        while time.monotonic() < deadline and extra.get("http_refused", 0) < len(refusals):
            msg = watch.recv(timeout_ms=500)
            if msg is not None and msg.service == "sink-live":
                extra = msg.extra
        watch.close()
        assert extra.get("http_refused", 0) >= len(refusals) and extra["auth_failures"] >= 9, extra
        log = stack.log("sink")
        assert "Traceback" not in log and "Traceback" not in stack.log("identity")
    finally:
        if browser is not None:
            browser.close()
        stack.shutdown()
        collector.client.loop_stop()
        broker.stop()
    print(f"\nnamed track {track} as {NAME}; names of the tracks that came later {new}; screenshot {SCREENSHOT}")
