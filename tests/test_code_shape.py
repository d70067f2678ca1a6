"""bench/code_shape.py's registry-target lists (string dispatch, import cycles, duplicated helpers) on small
source trees written to tmp_path: each finds what it should, and a clean tree gives nothing."""

import importlib.util
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "code_shape.py"
SPEC = importlib.util.spec_from_file_location("code_shape", SCRIPT)  # bench/ is scripts, not a package
code_shape = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(code_shape)


def write(root: Path, files: dict[str, str]) -> list[Path]:
    out = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        out.append(path)
    return out


DISPATCH = '''
def make(kind, spec):
    if kind == "a":
        return 1
    elif spec.backend_name == "b" or "c" == kind:
        return 2

    def inner(mode):  # counted on its own: 1 branch
        if mode == "x":
            return 3
    return inner


def fine(name):
    if name == "a":
        return 1
    if name in ("b", "c") or name != "d" or other == "e":
        return 2
    return {"f": 3}.get(name)
'''


def test_string_dispatch_with_three_branches_is_found(tmp_path):
    [path] = write(tmp_path, {"m.py": DISPATCH})
    assert code_shape.name_dispatches(path) == [("make", 2, 3)]
    assert code_shape.name_dispatches(path, least=1) == [("make", 2, 3), ("make.inner", 8, 1), ("fine", 14, 1)]


def test_two_module_cycle_is_found_in_function_imports_too(tmp_path):
    files = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from pkg.a import thing\n",
        "pkg/c.py": "from . import a\nimport pkg.b\n",
        "pkg/sub/__init__.py": "from ..c import x\n",
    })
    graph = code_shape.import_graph(files, root=tmp_path)
    assert graph["pkg.a"] == {"pkg.b": 1} and graph["pkg.b"] == {"pkg.a": 2}
    assert graph["pkg.c"] == {"pkg.a": 1, "pkg.b": 2} and graph["pkg.sub"] == {"pkg.c": 1}
    assert code_shape.import_cycles(graph) == [["pkg.a", "pkg.b"]]


def test_duplicated_helper_is_found(tmp_path):
    files = write(tmp_path, {
        "a.py": "def _read(p):\n    pass\n\n\ndef main():\n    pass\n",
        "b.py": "if True:\n    def _read(p):\n        pass\n\n\ndef main():\n    pass\n\n\n"
                "def __getattr__(n):\n    pass\n",
        "c.py": "class C:\n    def _read(self):\n        pass\n\n\ndef __getattr__(n):\n    pass\n",
    })
    assert code_shape.duplicated_helpers(files) == {"_read": [(files[0], 1), (files[1], 2)]}


def test_hand_rolled_registry_is_found(tmp_path):
    [rolled, shared] = write(tmp_path, {
        "rolled.py": "_THINGS: dict = {}\nCACHE = {}\n\n\ndef register(name):\n    def deco(f):\n"
                     "        _THINGS[name] = f\n        return f\n    return deco\n\n\n"
                     "def remember(k, v):\n    CACHE[k] = v\n",
        "shared.py": "from slime_core.infra.registry import Registry\nTHINGS = Registry('thing')\n"
                     "register = THINGS.register\n",
    })
    assert code_shape.hand_rolled_registries(rolled) == [("_THINGS", 7)]  # a plain cache is not a registry
    assert code_shape.hand_rolled_registries(shared) == []


def test_clean_tree_yields_nothing(tmp_path):
    files = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n\n\ndef pick(name):\n    if name == 'x':\n        return b.run()\n",
        "pkg/b.py": "import os\n\n\ndef run():\n    return os.sep\n",
    })
    assert [code_shape.name_dispatches(f) for f in files] == [[], [], []]
    assert code_shape.import_cycles(code_shape.import_graph(files, root=tmp_path)) == []
    assert code_shape.duplicated_helpers(files) == {}


def test_report_lists_the_new_sections(capsys):
    assert code_shape.main([]) == 0
    out = capsys.readouterr().out
    assert all(s in out for s in ("dispatching on a name", "import cycles", "helpers defined in 2+",
                                    "registries written out by hand"))
