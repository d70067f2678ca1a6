"""What is left of the code's shape targets: modules over 400 lines, functions over 60, pages over 120.

    python bench/code_shape.py [--module-lines 400] [--function-lines 60] [--page-lines 120] [PATH ...]

PATHs default to slime_core, app_pages and app.py. Also listed: imports that go up a layer (a stage in
slime_core/ importing slime_core.experiments or slime_core.present; an experiment importing present; anything
but a surface importing the CLI), and imports of the package's own modules made inside functions (per file: the
CLI's keep start-up fast, the app's keep torch after the first paint, two break cycles). Function length is the span of its lines (decorators
and docstring included) as `ast` reports it; nested functions are counted on their own as well. Exit
status 0 always: this is a list for the reviewer, not a gate.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = ("slime_core", "app_pages", "app.py")


def python_files(paths) -> list[Path]:
    out = []
    for p in paths:
        p = Path(p) if Path(p).is_absolute() else REPO / p
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def long_functions(path: Path, limit: int) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function longer than `limit` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []

    def walk(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    length = child.end_lineno - first + 1
                    if length > limit:
                        found.append((name, first, length))
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(tree)
    return found


LAYERS = {"experiments": 1, "present": 2, "cli": 3, "cli_args": 3, "cli_paper": 3}  # the CLI is a surface;
# everything else in slime_core/ is layer 0 (the stages)


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "slime_core":
        return None
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def upward_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import of a higher layer than the file's own (in functions too)."""
    rel = path.resolve().relative_to(REPO).with_suffix("")
    own = layer(".".join(rel.parts))
    if own is None:
        return []
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            if (layer(name) or 0) > own:
                out.append((node.lineno, name))
                break
    return out


def inner_imports(path: Path) -> int:
    """How many imports of slime_core or app_pages modules sit inside functions."""
    count = 0
    for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                count += any(n.split(".")[0] in ("slime_core", "app_pages") for n in names)
    return count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS))
    ap.add_argument("--module-lines", type=int, default=400)
    ap.add_argument("--function-lines", type=int, default=60)
    ap.add_argument("--page-lines", type=int, default=120, help="Streamlit pages (app_pages/*.py, app.py)")
    args = ap.parse_args(argv)
    files = python_files(args.paths)
    rel = lambda p: p.relative_to(REPO) if p.is_relative_to(REPO) else p
    sizes = [(rel(f), len(f.read_text(encoding="utf-8").splitlines())) for f in files]
    big = sorted([b for b in sizes if b[1] > args.module_lines], key=lambda b: -b[1])
    print(f"modules over {args.module_lines} lines: {len(big)}")
    for path, n in big:
        print(f"  {n:5d}  {path}")
    is_page = lambda p: (p.parts[0] == "app_pages" and p.name != "__init__.py") or str(p) == "app.py"
    pages = sorted([b for b in sizes if is_page(Path(b[0])) and b[1] > args.page_lines], key=lambda b: -b[1])
    print(f"pages (app_pages/, app.py) over {args.page_lines} lines: {len(pages)}")
    for path, n in pages:
        print(f"  {n:5d}  {path}")
    longs = sorted(((rel(f), *fn) for f in files for fn in long_functions(f, args.function_lines)),
                   key=lambda r: -r[3])
    print(f"functions over {args.function_lines} lines: {len(longs)}")
    for path, name, line, n in longs:
        print(f"  {n:5d}  {path}:{line}  {name}")
    ups = [(rel(f), line, name) for f in files if f.resolve().is_relative_to(REPO / "slime_core")
           for line, name in upward_imports(f)]
    print(f"imports going up a layer (stages < experiments < present < cli): {len(ups)}")
    for path, line, name in ups:
        print(f"  {path}:{line}  {name}")
    inner = sorted(((rel(f), inner_imports(f)) for f in files), key=lambda r: -r[1])
    inner = [r for r in inner if r[1]]
    print(f"imports of the package's own modules inside functions: {sum(n for _, n in inner)}")
    for path, n in inner:
        print(f"  {n:5d}  {path}")
    print(f"({len(files)} files scanned)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
