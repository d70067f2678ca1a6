"""Time the app as a user sees it: `streamlit run app.py` headless, driven by Playwright with the system Chromium
(never `playwright install`) at 1280x720.

    python bench/bench_browser.py [--presses 10] [--out bench/results/browser.json]

Measured from the moment `streamlit run` is started (the browser is launched before, not counted):
  first_tags_s       the first tag chip is on screen
  headline_s         both headline numbers are on screen (tag F1 and caption ROUGE-L; each also timed alone)
  percentile_s       (warm run) the photo's percentile among the test photos is on screen
  whole_page_s       the last element of the page (the timings expander) is on screen
and then the k slider moved by one step with the keyboard, `--presses` times (alternating left and right):
  k_rerender_tags_s  from the key press to the new number of tag chips on screen (median, max)
  k_rerender_page_s  from the key press to the whole page redrawn (the timings expander's new total)
Two runs: "cold" (an empty $SLIME_CACHE: no cached embeddings or gallery table, a first start on a new machine; it
also times when the background gallery table reaches the disk) and "warm" (a new server on the cache the cold run
filled; it also times the percentile line). Each run is a fresh server process; the OS file cache stays warm.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 300_000
PRESS_TIMEOUT_MS = 90_000
TIMINGS = re.compile(r"^Timings: ")


# Which parts of the page are on screen (first appearance is timed by polling every 50 ms).
MARKERS = """() => {
  const text = (sel, s) => [...document.querySelectorAll(sel)].some(e => (e.innerText || '').includes(s));
  return {first_tags_s: document.querySelectorAll('span.slime-tag').length > 0,
          tag_number_s: text('[data-testid="stMetricLabel"]', 'Tag F1 (exact)'),
          caption_number_s: text('[data-testid="stMetricLabel"]', 'Caption ROUGE-L'),
          percentile_s: text('p', 'This photo: '),
          whole_page_s: text('summary', 'Timings: ')};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, cache: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, SLIME_CACHE=cache, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("streamlit exited before opening its port")
            time.sleep(0.05)
    raise SystemExit(f"streamlit did not open its port within {timeout} s")


TIMINGS_JS = """() => { const e = [...document.querySelectorAll('p')].find(p => p.innerText.startsWith('Timings: '));
  return e ? e.innerText : null; }"""


def press_k(page, slider, key: str, expected: int) -> tuple[float, float]:
    """(seconds to the new tag count on screen, seconds to the whole page redrawn: the timings expander's new
    total) after one key press on the k slider."""
    previous = page.evaluate(TIMINGS_JS)
    slider.focus()  # a rerun may redraw the sidebar; focus the thumb again before every press
    t = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function(f"() => document.querySelectorAll('span.slime-tag').length === {expected}",
                           timeout=PRESS_TIMEOUT_MS, polling=20)
    tags = time.perf_counter() - t
    # Done when the timings total changes, or -- two runs can round to the same total -- when Streamlit's running
    # icon has been gone for 250 ms (then the time is counted up to when it went, not including the 250 ms).
    page.evaluate("() => { window.__slimeIdleSince = null; }")
    page.wait_for_function(f"""prev => {{
        const now = ({TIMINGS_JS})();
        if (now !== null && now !== prev) return true;
        const running = document.querySelector('[data-testid="stStatusWidgetRunningIcon"]');
        if (running) {{ window.__slimeIdleSince = null; return false; }}
        window.__slimeIdleSince = window.__slimeIdleSince ?? performance.now();
        return performance.now() - window.__slimeIdleSince > 250;
    }}""", arg=previous, timeout=PRESS_TIMEOUT_MS, polling=20)
    idle_for = page.evaluate("() => window.__slimeIdleSince === null ? 0 : (performance.now() - window.__slimeIdleSince) / 1000")
    return tags, time.perf_counter() - t - idle_for


def wait_gallery_table(cache: Path, t0: float, timeout: float = 900) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list((cache / "app").glob("gallery_*.json")):
            return round(time.perf_counter() - t0, 2)
        time.sleep(0.5)
    return None


def one_run(browser, cache: str, presses: int, workdir: Path, shot: Path | None, wait_table: bool) -> dict:
    port = free_port()
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    t0 = time.perf_counter()
    proc = start_server(port, cache, workdir / f"streamlit_{port}.log")
    try:
        wait_port(port, proc)
        out = {"port_open_s": round(time.perf_counter() - t0, 2)}
        page.goto(f"http://127.0.0.1:{port}", wait_until="domcontentloaded")
        wanted = ["first_tags_s", "tag_number_s", "caption_number_s", "whole_page_s"] + \
            ([] if wait_table else ["percentile_s"])  # a warm start reads the gallery table: percentile at once
        deadline = time.time() + TIMEOUT_MS / 1000
        while any(w not in out for w in wanted) and time.time() < deadline:
            seen = page.evaluate(MARKERS)
            for name in wanted:
                if seen[name] and name not in out:
                    out[name] = round(time.perf_counter() - t0, 2)
            time.sleep(0.05)
        out["headline_s"] = max(out.get("tag_number_s", 0), out.get("caption_number_s", 0)) or None
        if shot is not None:
            page.screenshot(path=str(shot))
        slider = page.get_by_role("slider", name=re.compile("k tags"))
        if slider.count() == 0:
            slider = page.locator('[data-testid="stSlider"]').filter(has_text="k tags").get_by_role("slider")
        k = page.locator("span.slime-tag").count()
        tags, whole = [], []
        for i in range(presses):
            key, k = ("ArrowLeft", k - 1) if i % 2 == 0 else ("ArrowRight", k + 1)
            try:
                a, b = press_k(page, slider.first, key, k)
            except Exception:
                page.screenshot(path=str(workdir / "press_timeout.png"))
                raise SystemExit(f"press {i + 1} ({key} to k={k}) timed out; see {workdir}/press_timeout.png and "
                                 f"the streamlit log there")
            tags.append(a)
            whole.append(b)
        out["k_rerender_tags_s"] = {"median": round(statistics.median(tags), 3), "max": round(max(tags), 3)}
        out["k_rerender_page_s"] = {"median": round(statistics.median(whole), 3), "max": round(max(whole), 3)}
        out["presses"] = presses
        if wait_table:  # the first start computes the gallery table in the background: when is it on disk?
            out["gallery_table_on_disk_s"] = wait_gallery_table(Path(cache), t0)
        return out
    finally:
        page.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presses", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "browser.json")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the warm run's first screen (PNG)")
    args = ap.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found: install the system Chromium (`apt-get install -y chromium`).")
    from playwright.sync_api import sync_playwright

    cache = tempfile.mkdtemp(prefix="slime-bench-browser-")
    workdir = Path(tempfile.mkdtemp(prefix="slime-bench-browser-logs-"))
    result = {"viewport": "1280x720", "cpus": os.cpu_count(), "load_average_1min_before": round(os.getloadavg()[0], 2),
              "runs": {}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            try:
                for name in ("cold", "warm"):
                    result["runs"][name] = one_run(browser, cache, args.presses, workdir,
                                                   args.screenshot if name == "warm" else None, name == "cold")
                    print(name, json.dumps(result["runs"][name]), flush=True)
            finally:
                browser.close()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    result["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
