"""The live view in a real browser: headless Chromium loads the page, and its screenshot
shows the video (the frame, not a blank or broken image) with the track's box drawn where
the track is, and the tracks table filled in by the page's script."""
from __future__ import annotations

import shutil
import subprocess
import time

import cv2
import numpy as np
import pytest

from common.messages import Identity
from services.sinks.drawing import track_colour
from sink_support import box_edge_pixels, colour_distance, get_json

CHROMIUM = "/usr/bin/chromium"
APT_HINT = "apt-get install -y --no-install-recommends chromium fonts-dejavu-core"
POS = 0  # the browser sees one still frame, so the screenshot is compared with a known image


@pytest.fixture(scope="session")
def chromium_problem() -> str | None:
    """Checked once a session: why Chromium cannot be used here, or None."""
    if shutil.which(CHROMIUM) is None:
        return f"{CHROMIUM} is missing: install it with `{APT_HINT}` (make setup does)"
    run = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--version"], capture_output=True,
                         text=True, timeout=60)
    if run.returncode != 0:
        return f"{CHROMIUM} --version failed ({run.returncode}): {run.stderr.strip()[-300:]}"
    return None


def chromium(tmp, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on `args`; the page gets 5 s of real time (the live page holds an event
    stream open, which would stop --virtual-time-budget's clock for good)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--timeout=5000", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, f"chromium failed ({run.returncode}):\n{run.stderr[-2000:]}"
    return run


def screenshot(url: str, tmp, size=(1000, 800)) -> np.ndarray:
    png = tmp / "page.png"
    chromium(tmp, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", url)
    assert png.exists(), "chromium wrote no screenshot"
    return cv2.imread(str(png))


def test_browser_shows_video_with_boxes_and_track_table(stack, chromium_problem):
    if chromium_problem:
        pytest.fail(chromium_problem)
    sink = stack.sink("--kind", "live", "--port", "0")
    url = sink.url()
    stack.publish_until(lambda: get_json(url + "tracks.json") is not None)
    with stack.publishing(fps=30, pos=POS):
        shot = screenshot(url, stack.tmp)

    frame = stack.images[POS]
    h, w = frame.shape[:2]
    scores = cv2.matchTemplate(shot, frame, cv2.TM_CCOEFF_NORMED)
    _, best, _, (ox, oy) = cv2.minMaxLoc(scores)
    assert best > 0.8, f"the frame is not on the page (best match {best:.2f})"
    video = shot[oy:oy + h, ox:ox + w]
    assert video.std() > 20, "the video region is blank"

    box = stack.gt[POS]
    colour = track_colour(1)
    on_edges = colour_distance(box_edge_pixels(video, box), colour)
    assert np.median(on_edges) < 80, f"no box of track 1's colour at its box (median distance {np.median(on_edges):.0f})"
    before = colour_distance(box_edge_pixels(frame, box), colour)
    assert np.median(before) > 80  # the colour is the drawing's, not the picture's

    below = shot[oy + h:]  # the table's colour swatch for track 1, drawn by the page's script
    assert (colour_distance(below, colour) < 40).sum() >= 50, "the tracks table shows no track 1"
    assert sink.stop() == 0


def test_browser_table_shows_names_as_text(stack, chromium_problem):
    """A name from the identity service appears in the page's table and Faces panel, as text: a
    name that looks like HTML is shown, not run (names are typed in by people)."""
    if chromium_problem:
        pytest.fail(chromium_problem)
    from cdp_support import Browser

    sink = stack.sink("--kind", "live", "--port", "0")
    url = sink.url()
    name = "Ada <b>L</b>"

    def named() -> bool:
        stack.publisher.send(Identity(track_id=1, frame_id=stack.next_id - 1, name=name, distance=0.3, t=time.time()))
        tracks = (get_json(url + "tracks.json") or {}).get("tracks", [])
        return any(t.get("name") == name for t in tracks)

    stack.publish_until(named)
    browser = Browser(stack.tmp)
    try:
        with stack.publishing(fps=30, pos=POS):
            browser.go(url)
            cell = browser.wait("[...document.querySelectorAll('#tracks td')].map(td => td.outerHTML)"
                                ".find(h => h.includes('Ada'))", 120, "the name in the tracks table")
            who = browser.wait("document.querySelector('#faces .who')?.textContent", 120, "the name in the Faces panel")
            bold = browser.js("document.querySelectorAll('#tracks b, #faces b').length")
    finally:
        browser.close()
    assert cell == "<td>Ada &lt;b&gt;L&lt;/b&gt;</td>"
    assert who == name and bold == 0  # shown as text, not made into an element
    assert sink.stop() == 0
