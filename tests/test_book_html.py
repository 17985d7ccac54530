"""The rendered book (build/html, made by `make html` / `make book`) in headless Chromium.

Serves build/html on 127.0.0.1 and opens every page with the network blocked (any request that
is not to that server is aborted and counted as a failure), then checks per page: it loads with
no JavaScript error and no failed local resource; every equation was typeset by MathJax (no
``$$``, ``\\(`` or ``\\[`` left in the visible text, one ``mjx-container`` per math element, no
MathJax error); every ``<img>`` loaded; no executed cell shows an error (traceback outputs,
papermill's exception banner, tracebacks on stderr); each chapter shows as many figures as its
executed notebook holds. Saves build/screenshots/landing.png and build/screenshots/chapter.png.

Skipped when build/html is missing. Chromium: Debian's (`apt-get install chromium`, done by
.ci/run and `make chromium`), or NSCL_CHROMIUM; Playwright's Python package drives it
(`playwright install` is never needed). Under CI (CI=true) a missing browser is a failure.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "build" / "html"
EXECUTED = ROOT / "build" / "executed"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHAPTERS = [p.stem for p in sorted((ROOT / "book").glob("[0-9][0-9]_*.py"))]
PAGES = ["index", *CHAPTERS, "teachers", "references"]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = pytest.mark.skipif(
    not (HTML / "index.html").is_file(),
    reason="build/html is missing: run `make html` (after `make execute`) or `make book` first",
)


def _chromium() -> str:
    for candidate in (
        os.environ.get("NSCL_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    message = "no Chromium: `apt-get install chromium` (or `make chromium`), or set NSCL_CHROMIUM"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    executable = _chromium()
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def open_page(browser, server):
    """open_page(name) -> (page, problems): the page loaded and typeset, and what went wrong."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    opened = []

    def open_(name: str):
        problems: list[str] = []
        page = context.new_page()
        opened.append(page)

        def route(route_):
            url = route_.request.url
            if url.startswith(server) or url.startswith(("data:", "blob:", "about:")):
                route_.continue_()
            else:
                problems.append(f"blocked request to the network: {url}")
                route_.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda exc: problems.append(f"JavaScript error: {exc}"))
        page.on(
            "requestfailed",
            lambda req: req.url.startswith(server) and problems.append(f"failed request: {req.url} ({req.failure})"),
        )
        page.on("response", lambda resp: resp.status >= 400 and problems.append(f"HTTP {resp.status}: {resp.url}"))
        response = page.goto(f"{server}/{name}.html", wait_until="load")
        assert response is not None and response.ok, f"{name}.html did not load"
        # MathJax 3 (on the pages that have math) typesets after load: wait until it has finished.
        if page.locator('script[src*="mathjax"]').count():
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
            page.evaluate("() => MathJax.startup.promise.then(() => true)")
        # Images: wait until every <img> has finished loading or failed.
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
        return page, problems

    yield open_
    for page in opened:
        page.close()
    context.close()


# Visible prose: the article (markdown cells and markdown outputs) without code, text and HTML
# outputs (printed values, tables) and typeset math.
PROSE_JS = """() => {
  const article = document.querySelector('article') || document.querySelector('main') || document.body;
  const clone = article.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, .headerlink, .cell_output .text_html')
       .forEach(e => e.remove());
  return clone.textContent;
}"""

MATH_JS = """() => {
  const math = Array.from(document.querySelectorAll('.math'));
  return {
    math: math.length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    containers: document.querySelectorAll('mjx-container').length,
    errors: Array.from(document.querySelectorAll('mjx-merror, [data-mjx-error]'))
                 .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5),
  };
}"""

IMAGES_JS = """() => Array.from(document.images).map(i => ({
  src: i.getAttribute('src').slice(0, 100), width: i.naturalWidth,
  output: !!i.closest('.cell_output'),
}))"""

ERRORS_JS = """() => {
  const found = [];
  document.querySelectorAll('.output.traceback, .output_error, .output.error')
    .forEach(e => found.push('error output: ' + e.textContent.trim().slice(0, 300)));
  document.querySelectorAll('.output.stderr, .output.stream').forEach(e => {
    const text = e.textContent;
    if (/Traceback \\(most recent call last\\)|^\\w*(Error|Exception)\\b/m.test(text))
      found.push('error on a stream: ' + text.trim().slice(0, 300));
  });
  if (/An Exception was encountered at/.test(document.body.textContent))
    found.push("papermill's exception banner");
  return found;
}"""

RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^\s$][^$\n]{0,200}?[^\s$\\]\$")


def _png_outputs(name: str) -> int:
    nb = json.loads((EXECUTED / f"{name}.ipynb").read_text(encoding="utf-8"))
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
    )


def test_every_chapter_has_a_page_in_reading_order():
    assert CHAPTERS, "no book/NN_*.py chapters"
    missing = [name for name in PAGES if not (HTML / f"{name}.html").is_file()]
    assert not missing, f"pages missing from build/html: {missing}"
    index = (HTML / "index.html").read_text(encoding="utf-8")
    positions = [index.find(f'href="{name}.html"') for name in CHAPTERS]
    assert all(p >= 0 for p in positions), f"the table of contents lacks chapters: {CHAPTERS}"
    assert positions == sorted(positions), "the table of contents is not in reading order"


def test_no_page_loads_scripts_styles_or_fonts_from_the_network():
    remote = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"'](?:https?:)?//", re.I)
    offending = {p.name: remote.findall(p.read_text(encoding="utf-8")) for p in HTML.glob("*.html")}
    offending = {k: v for k, v in offending.items() if v}
    assert not offending, f"remote resources referenced: {offending}"
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").is_file(), "local MathJax missing"


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_offline(open_page, name):
    page, problems = open_page(name)
    assert page.title(), f"{name}: no title"

    math = page.evaluate(MATH_JS)
    assert not math["untypeset"], f"{name}: math left untypeset: {math['untypeset'][:5]}"
    assert not math["errors"], f"{name}: MathJax errors: {math['errors']}"
    raw = RAW_TEX.findall(page.evaluate(PROSE_JS))
    assert not raw, f"{name}: raw TeX left in the visible text: {raw[:10]}"

    images = page.evaluate(IMAGES_JS)
    broken = [i["src"] for i in images if i["width"] == 0]
    assert not broken, f"{name}: images that did not load: {broken}"

    errors = page.evaluate(ERRORS_JS)
    assert not errors, f"{name}: executed cells show errors: {errors}"

    if name in CHAPTERS:
        assert page.locator("div.cell").count() > 0, f"{name}: no notebook cells rendered"
        expected = _png_outputs(name) if (EXECUTED / f"{name}.ipynb").is_file() else 0
        shown = sum(i["output"] for i in images)
        assert shown >= expected, f"{name}: {shown} figures shown, the notebook holds {expected}"
    if name == "index":
        assert math["containers"] > 0, "the landing page's equation was not typeset"
    if name == "teachers":
        assert page.locator("table").count() >= 3, "the teachers' page lost its tables (sets, timings, results)"
    if name == "references":
        entries = page.locator(".citation, dl.citation > dt, div.citation").count()
        assert entries >= 11, f"the bibliography lists {entries} entries, expected at least 11"

    assert not problems, f"{name}: {problems}"


def test_screenshots(open_page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page, problems = open_page("index")
    page.set_viewport_size({"width": 1280, "height": 1500})  # the top of the landing page and its TOC
    page.screenshot(path=str(SCREENSHOTS / "landing.png"))
    # A chapter at its first figure, with the text and equations around it.
    chapters = [c for c in CHAPTERS if (EXECUTED / f"{c}.ipynb").is_file() and _png_outputs(c)]
    page, more = open_page(chapters[0] if chapters else CHAPTERS[0])
    figure = page.locator(".cell_output img").first
    if figure.count():
        figure.evaluate("e => e.scrollIntoView({block: 'center'})")
    else:
        page.locator("mjx-container").first.evaluate("e => e.scrollIntoView({block: 'center'})")
    page.wait_for_timeout(200)
    page.screenshot(path=str(SCREENSHOTS / "chapter.png"))
    for path in ("landing.png", "chapter.png"):
        assert (SCREENSHOTS / path).stat().st_size > 10_000, f"{path} looks empty"
    assert not problems + more


def test_display_equations_scroll_in_their_box_at_phone_width(open_page):
    """At 375 px, a display equation wider than the screen scrolls inside its own box; nothing is cut off."""
    page, problems = open_page("02_consistency_conditions")
    page.set_viewport_size({"width": 375, "height": 800})
    page.wait_for_timeout(300)
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('mjx-container[display="true"]')).map(e => ({
            overflow: getComputedStyle(e).overflowX, width: e.getBoundingClientRect().width,
            inner: e.scrollWidth, right: e.getBoundingClientRect().right}))"""
    )
    assert boxes, "no display equation on the page"
    assert all(b["overflow"] == "auto" for b in boxes)
    assert all(b["right"] <= 375 + 1 for b in boxes), [b for b in boxes if b["right"] > 376][:3]
    assert not problems
