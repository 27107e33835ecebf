"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package) loads the
page with no console error, the charts and the sample browser are there, and the browser works
(another prompt -> other samples; a condition switched off -> its column hidden). Screenshots are
kept in tests/screenshots/.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so the test needs nothing beyond the standard
library. Skipped, with the reason, only where /usr/bin/chromium is absent (a failure in CI, see
tests/needs.py).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from needs import unavailable
from release import conflictingqa
from test_html_report import HOSTILE, PROMPTS, build_run

from lite_align.compare import load_report_input
from lite_align.html_report import render_html
from lite_align.metrics.registry import is_embedding_metric, metrics

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SCREENSHOTS = Path(__file__).parent / "screenshots"
WIDTH = 1400


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    if not CHROMIUM.exists():
        unavailable("Chromium is not installed at /usr/bin/chromium", "apt-get install chromium fonts-dejavu-core")


class Chromium:
    """One headless Chromium and one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, profile: Path) -> None:
        cmd_read, self._cmd_write = os.pipe()  # we write commands; Chromium reads them on fd 3
        self._out_read, out_write = os.pipe()  # Chromium writes replies and events on fd 4

        def wire() -> None:  # in the child: put the pipe ends on 3 and 4
            a, b = os.dup(cmd_read), os.dup(out_write)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = profile / "chromium.log"
        args = [str(CHROMIUM), *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(3, 4), preexec_fn=wire
            )
        os.close(cmd_read)
        os.close(out_write)
        self._id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.page(f"{domain}.enable")

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._out_read, 1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._arrived:
                        self._replies[msg["id"]] = msg
                        self._arrived.notify_all()
                else:
                    self.events.put(msg)

    def call(self, method: str, *, _session: str | None = None, _timeout: float = 30, **params: Any) -> Any:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if _session:
            msg["sessionId"] = _session
        os.write(self._cmd_write, json.dumps(msg).encode() + b"\0")
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._id in self._replies, _timeout):
                raise TimeoutError(f"{method}: no reply in {_timeout} s; log: {self.log.read_text()[-2000:]}")
            reply = self._replies.pop(self._id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def page(self, method: str, **params: Any) -> Any:
        return self.call(method, _session=self.session, **params)

    def js(self, expression: str) -> Any:
        reply = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def open(self, path: Path, height: int = 1000) -> list[dict[str, Any]]:
        """Load a file; return every event until the load event (the test inspects them)."""
        self.page("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1, mobile=False)
        self.page("Page.navigate", url=path.resolve().as_uri())
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in seen):
            try:
                seen.append(self.events.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{path} did not finish loading in 60 s: {problems(seen)}") from None
            if seen[-1].get("method") == "Page.javascriptDialogOpening":  # an alert() ran: note it, go on
                self.page("Page.handleJavaScriptDialog", accept=False)
        return seen

    def drain(self) -> list[dict[str, Any]]:
        time.sleep(0.3)  # let late console messages arrive
        out = []
        while not self.events.empty():
            out.append(self.events.get())
        return out

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element (after scrolling it into view)."""
        x, y = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path, max_height: int) -> bytes:
        height = min(int(self.js("document.documentElement.scrollHeight")), max_height)
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}
        png = base64.b64decode(
            self.page("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    def close(self) -> None:
        try:
            self.call("Browser.close", _timeout=5)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_write)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = Chromium(profile)
    try:
        yield browser
    finally:
        browser.close()


def problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions, failed loads and dialogs (an alert() that ran)."""
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(f"exception: {params['exceptionDetails'].get('exception', {}).get('description')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            out.append(f"log {params['entry']['level']}: {params['entry']['text']}")
        elif method == "Page.javascriptDialogOpening":
            out.append(f"dialog: {params.get('message')}")
    return out


def write_page(run_or_outputs: Path, out: Path, **kw: Any) -> Path:
    inp = load_report_input(run_or_outputs, **kw)
    out.write_text(render_html(inp.manifest, inp.results, inp.sets, inp.prompts, teacher=inp.teacher))
    return out


def test_report_of_a_small_run_works_in_chromium(chromium: Chromium, tmp_path: Path) -> None:
    page = write_page(build_run(tmp_path, hostile=True), tmp_path / "report.html")
    events = chromium.open(page)
    assert problems(events + chromium.drain()) == []
    # charts: one per diversity measure computed without the encoder (the paper's 7, the field's 12)
    # and one per similarity (1), each with a title and a description
    lexical = [m for m in metrics() if not is_embedding_metric(m.key)]
    assert chromium.js("document.querySelectorAll('svg.chart').length") == len(lexical) + 1 == 20
    assert chromium.js("[...document.querySelectorAll('svg.chart')].every(s => s.querySelector('title, desc'))")
    assert chromium.js("document.querySelectorAll('svg.chart line.whisker').length") > 20
    # the sample browser: one column per condition, the hostile sample shown as text, no element from it
    conditions = chromium.js("[...document.querySelectorAll('#browser .column h3')].map(h => h.textContent)")
    assert conditions == ["chat", "chat-greedy", "base", "base-greedy", "icl-static"]
    texts = chromium.js(
        "[...document.querySelectorAll('.column[data-cond=base] .sample-text')].map(p => p.textContent)"
    )
    assert texts[-1] == HOSTILE and len(texts) == 4
    assert chromium.js("document.querySelectorAll('#browser script, #browser img, #browser b').length") == 0
    assert chromium.js("document.querySelectorAll('#browser mark').length") > 5
    assert chromium.js("document.getElementById('prompt-text').textContent") == f"Prompt 0: {PROMPTS[0]}"
    before = chromium.js("document.getElementById('browser').textContent")
    # another prompt, by a real click on the "next" button
    chromium.click("#next-prompt")
    assert chromium.js("document.getElementById('prompt-text').textContent") == f"Prompt 1: {PROMPTS[1]}"
    assert chromium.js("document.getElementById('browser').textContent") != before
    # and by the selector: the prompt whose text holds markup shows it as text
    chromium.js(
        "(() => { const s = document.getElementById('prompt-select'); s.value = '3';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    assert chromium.js("document.getElementById('prompt-text').textContent") == f"Prompt 3: {PROMPTS[3]}"
    # a condition switched off hides its column
    chromium.click("input[data-cond='chat-greedy']")
    assert chromium.js("document.querySelector(\".column[data-cond='chat-greedy']\").offsetParent") is None
    assert chromium.js("document.querySelector(\".column[data-cond='base']\").offsetParent") is not None
    chromium.js(
        "(() => { const s = document.getElementById('prompt-select'); s.value = '0';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    png = chromium.screenshot(SCREENSHOTS / "report.png", max_height=4200)
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert problems(chromium.drain()) == []


def test_report_of_the_papers_release_loads_in_chromium(chromium: Chromium, tmp_path: Path) -> None:
    """The paper-sized page (6 sets x 434 prompts x 5 samples, about 10 MB) loads and browses."""
    page = write_page(conflictingqa() / "outputs", tmp_path / "paper.html", reference="gpt-3.5-turbo")
    assert page.stat().st_size < 16_000_000
    t0 = time.monotonic()
    events = chromium.open(page)
    load_s = time.monotonic() - t0
    assert problems(events + chromium.drain()) == []
    assert load_s < 20, f"the page took {load_s:.1f} s to load"
    assert chromium.js("document.querySelectorAll('#prompt-select option').length") == 434
    assert chromium.js("document.querySelectorAll('#browser .sample').length") == 30
    first = chromium.js("document.querySelector('.column[data-cond=\"gpt-3.5-turbo\"] .sample-head').textContent")
    assert first == "sample 0 · the reference (teacher's sample 0)"
    chromium.click("#next-prompt")
    assert chromium.js("document.getElementById('prompt-text').textContent").startswith("Prompt 1: Are Bees")
    chromium.js(
        "(() => { const s = document.getElementById('prompt-select'); s.value = '0';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    chromium.screenshot(SCREENSHOTS / "paper-release.png", max_height=3400)
    assert problems(chromium.drain()) == []
