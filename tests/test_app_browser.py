"""One real-browser check: `streamlit run app.py` headless on 127.0.0.1, driven by Playwright with the system
Chromium (never `playwright install`), at 1280x720: the headline's coloured tags and tag number are above the fold;
moving the k slider changes the tags; saves a screenshot."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium not found at /usr/bin/chromium "
                       "(install it with `apt-get install -y chromium`)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not open its port within 60 s")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


FOLD_JS = """parts => parts.every(([sel, i]) => { const els = [...document.querySelectorAll(sel)];
  const e = els.at(i); if (!e) return false; const r = e.getBoundingClientRect();
  return r.height > 0 && r.bottom <= window.innerHeight; })"""


def above_the_fold(page, parts: list[tuple[str, int]], tmp_path) -> None:
    """Wait (the page may still be re-running) until each (selector, index) element lies inside the viewport."""
    try:
        page.wait_for_function(FOLD_JS, arg=parts, timeout=60_000)
    except Exception:
        page.screenshot(path=str(tmp_path / "fold.png"))
        boxes = {f"{sel}[{i}]": page.evaluate(
            "([sel, i]) => { const e = [...document.querySelectorAll(sel)].at(i); "
            "return e ? e.getBoundingClientRect().toJSON() : null; }", [sel, i]) for sel, i in parts}
        pytest.fail(f"not above the fold at 1280x720: {boxes} (screenshot {tmp_path / 'fold.png'})")


def chip_tags(page) -> list[str]:
    return page.locator("span.slime-tag").all_inner_texts()


def test_k_slider_changes_tags_in_a_real_browser(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(server, wait_until="domcontentloaded")
            page.locator("span.slime-tag").first.wait_for(timeout=120_000)
            page.get_by_text("Tag F1 (exact)").first.wait_for(timeout=60_000)
            before = chip_tags(page)
            assert len(before) == 10
            classes = page.locator("span.slime-tag").evaluate_all("els => els.map(e => e.dataset.class)")
            assert set(classes) <= {"exact", "neighbourhood", "miss"}
            # the headline fits a 1280x720 screen: the tags and the tag number are above the fold
            above_the_fold(page, [("span.slime-tag", -1), ('[data-testid="stMetricValue"]', 0)], tmp_path)
            slider = page.get_by_role("slider", name=re.compile("k tags"))
            if slider.count() == 0:  # older Streamlit builds label the thumb differently
                slider = page.locator('[data-testid="stSlider"]').filter(has_text="k tags").get_by_role("slider")
            slider.first.focus()
            for _ in range(6):
                page.keyboard.press("ArrowLeft")
            time.sleep(1)  # the slider sends its value when the keys stop
            k = int(slider.first.get_attribute("aria-valuenow") or page.locator('[data-testid="stSlider"]').filter(
                has_text="k tags").locator('[data-testid="stSliderThumbValue"]').first.inner_text())  # 4, or more
            # when a rerun swallowed a key press
            assert k < 10
            page.wait_for_function(f"() => document.querySelectorAll('span.slime-tag').length === {k}", timeout=60_000)
            after = chip_tags(page)
            assert after == before[:k]
            page.get_by_text(re.compile(r"^Timings: ")).first.wait_for(timeout=120_000)
            # presentation mode: no sidebar, and the whole headline (tags, caption, both numbers) on one 1280x720 screen
            has_caption = page.locator("div.slime-caption").count() > 0  # no public captions: no consensus writer
            page.get_by_text("Presentation mode").first.click()
            page.locator('section[data-testid="stSidebar"]').wait_for(state="hidden", timeout=60_000)
            page.wait_for_function(f"() => document.querySelectorAll('span.slime-tag').length === {k}", timeout=60_000)
            parts = [("span.slime-tag", -1), ('[data-testid="stMetricValue"]', 0)]
            if has_caption:
                page.get_by_text("Caption ROUGE-L").first.wait_for(timeout=120_000)
                parts += [("div.slime-caption", 0), ('[data-testid="stMetricValue"]', -1)]
            above_the_fold(page, parts, tmp_path)
            page.wait_for_load_state("networkidle", timeout=30_000)
            shot = tmp_path / "slime_app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")
        finally:
            browser.close()
