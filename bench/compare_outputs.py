"""Compare two folders of `slime` outputs (before/after a refactor): every *.json by value to 1e-6 (ignoring
`seconds` and `created`), every *.txt exactly, every *.html by its visible text (scripts and plotly divs removed).

    python bench/compare_outputs.py BEFORE_DIR AFTER_DIR [old_key=new_key ...]

old_key=new_key renames keys of BEFORE's JSON first (a deliberate rename, e.g. tag_f1=exact_f1).
Fill the folders with e.g. (one source tree each, same data and cache):
    D="--split test --limit 40 --victim lite0 --bootstrap 200 --no-progress"
    slime eval $D --n-align 30,300 --k 5,10 --format json --output DIR/eval.json
    slime defend $D --defence noise --strength 0,0.1 --format json --output DIR/defend_noise.json --caption consensus
    slime report $D --n-aligns 30,300 --ks 5,10 --examples 2 --out DIR/report.html
"""
import html, json, math, re, sys
from pathlib import Path
A, B = Path(sys.argv[1]), Path(sys.argv[2])
RENAMES = dict(a.split("=") for a in sys.argv[3:])  # old_key=new_key applied to A
IGNORE = {"seconds", "created"}
bad = []
def norm(o):
    if isinstance(o, dict):
        return {RENAMES.get(k, k): norm(v) for k, v in o.items() if k not in IGNORE}
    if isinstance(o, list):
        return [norm(v) for v in o]
    return o
def cmp(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            bad.append(f"{path}: keys {sorted(set(a) ^ set(b))}")
        for k in set(a) & set(b):
            cmp(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            bad.append(f"{path}: len {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            cmp(x, y, f"{path}[{i}]")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if not (a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6):
            bad.append(f"{path}: {a} != {b}")
    elif a != b:
        bad.append(f"{path}: {a!r} != {b!r}")
n = 0
for f in sorted(A.glob("*.json")):
    cmp(norm(json.loads(f.read_text())), norm(json.loads((B / f.name).read_text())), f.name); n += 1
def text(p):
    s = p.read_text()
    s = re.sub(r"<script.*?</script>", "", s, flags=re.S)
    s = re.sub(r"<div>\s*<div id=.*?</div>\s*</div>", "", s, flags=re.S)  # plotly divs (random ids)
    s = re.sub(r"Created \S+", "Created X", s)
    s = html.unescape(re.sub(r"<[^>]+>", " ", s))
    return re.sub(r"\s+", " ", s).strip()
for f in sorted(A.glob("*.txt")):
    a, b = f.read_text(), (B / f.name).read_text()
    if a != b: bad.append(f"{f.name}: text differs"); n += 1
    else: n += 1
for f in sorted(A.glob("*.html")):
    a, b = text(f), text(B / f.name)
    if a != b:
        i = next(i for i in range(min(len(a), len(b))) if a[i] != b[i]) if a[:min(len(a),len(b))] != b[:min(len(a),len(b))] else min(len(a), len(b))
        bad.append(f"{f.name}: visible text differs at {i}: {a[i-80:i+80]!r} vs {b[i-80:i+80]!r}")
    n += 1
print(f"compared {n} files: " + ("IDENTICAL (JSON to 1e-6, text exact, HTML visible text exact)" if not bad else f"{len(bad)} differences"))
for x in bad[:30]: print("  ", x)
