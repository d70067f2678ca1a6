"""What is left of the code's shape targets: modules over 400 lines, functions over 60, pages over 120.

    python bench/code_shape.py [--module-lines 400] [--function-lines 60] [--page-lines 120] [PATH ...]

PATHs default to slime_core, app_pages and app.py. Also listed: imports that go up a layer (the folders, bottom to
top: infra/, stages/, the pipeline and training/, experiments/, present/, cli/ — see LAYERS), and imports of the package's own modules made inside functions (per file: the
CLI's keep start-up fast, the app's keep torch after the first paint, two break cycles). Function length is the span of its lines (decorators
and docstring included) as `ast` reports it; nested functions are counted on their own as well.
Three more lists point at work for the registries and the layering: functions that dispatch on a name with 3 or
more `if name == "..."` branches (a registry's job), cycles in the import graph of slime_core's modules (imports
inside functions count: they hide a cycle, they do not remove it), and helpers defined under one name in two or
more slime_core modules (module-level functions; main and dunders aside), and registries written out by hand
(a module-level dict that a decorator fills) instead of on `infra.registry.Registry`. Exit status 0 always: this is
a list for the reviewer, not a gate.
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


def functions(path: Path):
    """(qualified name, node) of every function in the file, methods and nested functions included."""
    def walk(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child
                yield from walk(child, name + ".")
            else:
                yield from walk(child, prefix)

    yield from walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))


def long_functions(path: Path, limit: int) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function longer than `limit` lines."""
    found = []
    for name, fn in functions(path):
        first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        length = fn.end_lineno - first + 1
        if length > limit:
            found.append((name, first, length))
    return found


# slime_core's folders, bottom to top: what every layer may use, the paper's stages, the pipeline that chains them
# (and training, beside it), the experiments, their presentation, the CLI (a surface). The package's own
# __init__ (the public API's lazy names) stands outside the layers.
LAYERS = {"infra": 0, "stages": 1, "pipeline": 2, "attack_spec": 2, "attack_result": 2, "attack_captions": 2,
          "training": 2, "experiments": 3, "present": 4, "cli": 5}


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "slime_core":
        return None
    if len(parts) < 2 or parts[1] == "__init__":
        return None
    return LAYERS.get(parts[1])


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


DISPATCH_SUFFIXES = ("name", "kind", "method", "backend", "mode")  # identifiers a string dispatch compares


def _own_nodes(fn):
    """The nodes of a function's body, without those of functions, lambdas and classes nested in it."""
    todo = list(ast.iter_child_nodes(fn))
    while todo:
        node = todo.pop()
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            yield node
            todo += ast.iter_child_nodes(node)


def _is_name_test(node) -> bool:
    """`x == "..."` (either way round) where x is a Name/Attribute whose identifier ends in a DISPATCH_SUFFIXES word."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = (node.left, node.comparators[0])
    ident = lambda n: n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else ""
    named = any(ident(n).lower().endswith(DISPATCH_SUFFIXES) for n in sides)
    return named and any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in sides)


def name_dispatches(path: Path, least: int = 3) -> list[tuple[str, int, int]]:
    """(qualified name, first line, count) of every function whose if/elif tests hold `least` or more
    `name == "..."` comparisons (nested functions counted on their own)."""
    found = []
    for name, fn in functions(path):
        tests = [n.test for n in _own_nodes(fn) if isinstance(n, ast.If)]
        count = sum(_is_name_test(c) for t in tests for c in ast.walk(t))
        if count >= least:
            found.append((name, fn.lineno, count))
    return found


def module_name(path: Path, root: Path = REPO) -> str:
    """slime_core/stages/encoders/base.py -> slime_core.stages.encoders.base; a package's __init__.py -> the package."""
    parts = path.resolve().relative_to(root.resolve()).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(files, root: Path = REPO) -> dict[str, dict[str, int]]:
    """module -> {module it imports: first line}, between the given files' modules only; imports anywhere in a
    file count (top level and in functions). `from P import x` is an edge to P.x where that is a module, else to P."""
    known = {module_name(f, root): f for f in files}

    def target(name: str) -> str | None:
        parts = name.split(".")
        return next((m for i in range(len(parts), 0, -1) if (m := ".".join(parts[:i])) in known), None)

    graph = {}
    for mod, path in known.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges = graph[mod] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: up (level - 1) packages from this module's own
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for hit in filter(None, map(target, names)):
                if hit != mod:
                    edges.setdefault(hit, node.lineno)
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in a stable order."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _top_level_functions(tree):
    """Module-level function definitions, also those under a module-level if/try/with (not in classes)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo += [n for field in ("body", "orelse", "finalbody", "handlers") for n in getattr(node, field, [])]
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body


def duplicated_helpers(files) -> dict[str, list[tuple[Path, int]]]:
    """Function name -> [(file, line)] for module-level functions defined in two or more of the files
    (main and dunders aside: those are meant to repeat)."""
    where: dict[str, list[tuple[Path, int]]] = {}
    for f in files:
        for fn in _top_level_functions(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            if fn.name != "main" and not (fn.name.startswith("__") and fn.name.endswith("__")):
                where.setdefault(fn.name, []).append((f, fn.lineno))
    return {name: sites for name, sites in sorted(where.items()) if len({f for f, _ in sites}) > 1}


def _module_dicts(tree) -> set[str]:
    """Names a module binds to a dict display (`X = {}`, `X: dict[...] = {...}`) at its top level."""
    out = set()
    for node in tree.body:
        target, value = ((node.targets[0], node.value) if isinstance(node, ast.Assign) and len(node.targets) == 1
                         else (node.target, node.value) if isinstance(node, ast.AnnAssign) else (None, None))
        if isinstance(target, ast.Name) and isinstance(value, ast.Dict):
            out.add(target.id)
    return out


def hand_rolled_registries(path: Path) -> list[tuple[str, int]]:
    """(dict name, line) for module-level dicts a decorator fills -- `X[name] = entry` inside a function nested in
    a module-level function, or in one named register*: a registry written out again instead of
    `infra.registry.Registry`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    dicts, found = _module_dicts(tree), {}
    for fn in _top_level_functions(tree):
        inner = [n for n in ast.walk(fn) if isinstance(n, (ast.FunctionDef, ast.Lambda)) and n is not fn]
        scopes = inner + ([fn] if fn.name.startswith("register") else [])
        for scope in scopes:
            for node in ast.walk(scope):
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in dicts:
                            found.setdefault(t.value.id, node.lineno)
    return sorted(found.items(), key=lambda kv: kv[1])


def print_registry_targets(files, rel) -> None:
    """The three lists the module docstring ends with: string dispatch, import cycles, duplicated helpers."""
    dispatch = sorted(((rel(f), *d) for f in files for d in name_dispatches(f)), key=lambda r: -r[3])
    print(f"functions dispatching on a name with 3+ `name == \"...\"` branches: {len(dispatch)}")
    for path, name, line, n in dispatch:
        print(f"  {n:5d}  {path}:{line}  {name}")
    package = [f for f in files if f.resolve().is_relative_to(REPO / "slime_core")]
    graph = import_graph(package)
    cycles = import_cycles(graph)
    print(f"import cycles between slime_core modules (in-function imports included): {len(cycles)}")
    short = lambda m: m.removeprefix("slime_core.")
    for cycle in cycles:
        print("  " + " <-> ".join(cycle))
        for a in cycle:
            edges = [f"{short(b)} (line {line})" for b, line in sorted(graph[a].items()) if b in cycle]
            print(f"      {short(a)} imports " + ", ".join(edges))
    rolled = [(rel(f), name, line) for f in package for name, line in hand_rolled_registries(f)]
    print(f"registries written out by hand (a module dict a decorator fills, not infra.registry.Registry): "
          f"{len(rolled)}")
    for path, name, line in rolled:
        print(f"  {path}:{line}  {name}")
    dupes = duplicated_helpers(package)
    print(f"helpers defined in 2+ slime_core modules: {len(dupes)}")
    for name, sites in dupes.items():
        print(f"  {name}: " + ", ".join(f"{rel(f)}:{line}" for f, line in sites))


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
    print(f"imports going up a layer (infra < stages < pipeline, training < experiments < present < cli): {len(ups)}")
    for path, line, name in ups:
        print(f"  {path}:{line}  {name}")
    inner = sorted(((rel(f), inner_imports(f)) for f in files), key=lambda r: -r[1])
    inner = [r for r in inner if r[1]]
    print(f"imports of the package's own modules inside functions: {sum(n for _, n in inner)}")
    for path, n in inner:
        print(f"  {n:5d}  {path}")
    print_registry_targets(files, rel)
    print(f"({len(files)} files scanned)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
