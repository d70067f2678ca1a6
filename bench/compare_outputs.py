"""Are `slime attack`, `eval`, `defend` and `report` unchanged by a refactor? Run the same commands as whole
processes on two checkouts and compare what they print and write.

    python bench/compare_outputs.py save  /tmp/before      # on the old checkout (or: git worktree add ...)
    python bench/compare_outputs.py check /tmp/before      # on the new one: exit 1 and a diff where they differ

Every command runs on the default bundle and a few Flickr8k test photos (`--data`, default
../shared/data/flickr8k_8k_224), with fixed seeds. JSON outputs are compared value by value (floats to 1e-6) after
dropping what may differ between two identical runs (timings, dates, the package version); the HTML report by its
visible text (scripts and plotly's randomly named divs removed); printed text line by line after the timings.
"""

from __future__ import annotations

import argparse
import difflib
import html
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VOLATILE_KEYS = {"seconds", "elapsed_s", "time_s", "timings", "generated", "date", "version", "slime_version",
                 "created", "wall_s", "duration_s"}
VOLATILE_TEXT = re.compile(r"(\d+(\.\d+)? ?s\b|\d{4}-\d\d-\d\d[T ][\d:.]+|version [\w.+-]+|\d+\.\d+it/s)")


def commands(data: Path, out: Path) -> dict[str, list[str]]:
    """name -> argv (the outputs land in `out`)."""
    demo = REPO / "assets" / "demo" / "images"
    photo = sorted(demo.iterdir())[0]
    small = ["--data", str(data), "--limit", "24", "--bootstrap", "200", "--no-progress"]
    return {
        "attack_image": ["attack", "--image", str(photo), "--k", "10", "--caption", "mbr", "--format", "json"],
        "attack_folder": ["attack", "--data", str(data), "--split", "test", "--k", "5", "--caption", "none",
                          "--format", "jsonl", "--no-progress"],
        "eval": ["eval", *small, "--n-align", "30,300", "--k", "5,10", "--caption", "mbr", "--format", "json"],
        "defend": ["defend", "--defence", "noise", "--strength", "0,0.1", *small, "--k", "10", "--format", "json"],
        "report": ["report", "--out", str(out / "report.html"), "--defence", "noise", "--strength", "0,0.1",
                   *small, "--examples", "2"],
    }


def run_all(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONHASHSEED": "0", "SLIME_DATA": str(data)}  # the pool's captions, in any checkout
    for name, argv in commands(data, out).items():
        if name == "attack_folder":  # every test photo would take minutes: a folder of the first 8
            argv = _small_folder(data, out, argv)
        done = subprocess.run([sys.executable, "-m", "slime_core.cli.main", *argv], capture_output=True, text=True,
                              env=env, cwd=REPO)
        # where the checkout and the outputs lie is not part of the output
        (out / f"{name}.stdout").write_text(done.stdout.replace(str(out), "<out>").replace(str(REPO), "<repo>"))
        (out / f"{name}.rc").write_text(str(done.returncode))
        print(f"{name}: exit {done.returncode} {done.stderr.strip().splitlines()[-1:] if done.returncode else ''}",
              file=sys.stderr)


def _small_folder(data: Path, out: Path, argv: list[str]) -> list[str]:
    folder = out / "folder"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (data / "captions.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == "test"][:8]
    for r in rows:
        target = folder / "images" / r["image"]
        if not target.exists():
            target.symlink_to((data / "images" / r["image"]).resolve())
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [str(folder) if a == str(data) else a for a in argv]


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):
        return VOLATILE_TEXT.sub("<t>", value)
    return value


def normalised(path: Path) -> list[str]:
    """The file as comparable lines: JSON (or JSON lines) cleaned of volatile values; text without timings."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        text = re.sub(r"<script.*?</script>", "", text, flags=re.S)
        text = re.sub(r"<div>\s*<div id=.*?</div>\s*</div>", "", text, flags=re.S)  # plotly divs (random ids)
        text = html.unescape(re.sub(r"<[^>]+>", "\n", text))
        return [VOLATILE_TEXT.sub("<t>", line.strip()) for line in text.splitlines() if line.strip()]
    try:
        docs = [json.loads(text)]
    except ValueError:
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            docs = None
    if docs:
        return json.dumps([_clean(d) for d in docs], indent=1, sort_keys=True).splitlines()
    return [VOLATILE_TEXT.sub("<t>", line) for line in text.splitlines()]


def compare(before: Path, after: Path) -> list[str]:
    problems = []
    names = sorted({p.name for p in before.iterdir() if p.is_file()} | {p.name for p in after.iterdir() if p.is_file()})
    for name in names:
        a, b = before / name, after / name
        if not (a.exists() and b.exists()):
            problems.append(f"{name}: only in {'before' if a.exists() else 'after'}")
            continue
        la, lb = normalised(a), normalised(b)
        if la != lb:
            diff = list(difflib.unified_diff(la, lb, f"before/{name}", f"after/{name}", lineterm="", n=1))
            problems.append("\n".join(diff[:40]))
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["save", "check"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "flickr8k_8k_224",
                    help="the Flickr8k folder (a worktree elsewhere must name it)")
    args = ap.parse_args(argv)
    if args.mode == "save":
        run_all(args.data, args.folder)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        run_all(args.data, Path(tmp))
        problems = compare(args.folder, Path(tmp))
    for p in problems:
        print(p)
    print(f"{len(problems)} output(s) differ" if problems else "all outputs identical")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
