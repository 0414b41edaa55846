"""Headless Chromium driven over the DevTools protocol, on a pipe (no websocket library needed).

`--remote-debugging-pipe` makes Chromium read JSON commands, each ending with a NUL byte, on
its fd 3 and write replies and events on its fd 4. A test clicks and types through the page's
own elements: `click(selector)` calls the element's click(), `type_into(selector, text)`
focuses it and sends the text as keyboard input (Input.insertText).
"""
from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path

from test_sink_browser import CHROMIUM


class Browser:
    def __init__(self, tmp: Path, size=(1200, 820)):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():  # Chromium's fd 3 reads commands, fd 4 writes answers (kept open: pass_fds)
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)  # neither may be 3 or 4 while the other moves
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chromium-cdp'}", f"--window-size={size[0]},{size[1]}",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
            stderr=open(tmp / "chromium-cdp.log", "w"))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.session: str | None = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Network.enable")

    def call(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        self._next += 1
        msg: dict = {"id": self._next, "method": method, "params": params or {}}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline, method):
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})

    def _read(self, deadline: float, what: str) -> list[dict]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0, f"chromium did not answer {what}"
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                assert chunk, f"chromium closed its pipe (exit {self.proc.poll()})"
                self._buf += chunk
        *messages, self._buf = self._buf.split(b"\0")
        return [json.loads(m) for m in messages]

    def headers(self, headers: dict[str, str]) -> None:
        """Sent with every request of the page (fetch, EventSource, images too)."""
        self.call("Network.setExtraHTTPHeaders", {"headers": headers})

    def go(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float, what: str):
        """The first truthy value of `expression` in the page, polled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.js(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"{what}: not on the page after {timeout} s")

    def click(self, selector: str) -> None:
        assert self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                       "if (!e) return false; e.click(); return true; })()"), f"nothing to click at {selector}"

    def type_into(self, selector: str, text: str) -> None:
        """Replace the field's text with `text`, typed."""
        assert self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                       "if (!e) return false; e.focus(); e.select(); return document.activeElement === e; })()"), selector
        self.call("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> None:
        png = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
