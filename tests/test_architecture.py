"""The package's shape, held by a test: one-way layers, no import cycles, few function-level
imports, TensorFlow out of inference, modules a reader can take in.

Every `import` of the package's own modules counts, at module level or inside a function
(docs/architecture.md draws the layers).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "siamese"

# Lowest first; a module may import its own subpackage and those of lower rank only. Two
# subpackages of the same rank (verification, clustering) know nothing of each other.
LAYERS = {"io": 0, "faces": 1, "data": 2, "model": 3, "library": 3.5, "gallery": 4, "verification": 5,
          "clustering": 5, "eval": 6, "train": 7, "service": 8, "commands": 9, "cli": 10, "api": 10}
# Third-party modules heavy enough that importing them only when needed is worth a
# function-level import (seconds of start-up, or an optional extra).
HEAVY = {"keras", "tensorflow", "tf2onnx", "dlib", "face_recognition_models", "uvicorn", "fastapi", "httpx",
         "ray", "pyarrow"}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _target(module: str, name: str | None) -> str:
    """The package module an import statement loads (`from a.b import c`: a.b.c if c is a module)."""
    if name and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module


def _imports(path: Path) -> list[tuple[str, int, bool, set[str]]]:
    """(package module imported, line, inside a function?, names of heavy modules it needs) per
    import of the package's own modules, and every third-party import (for `_heavy`)."""
    tree = ast.parse(path.read_text())
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(node) if n is not node}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((a.name, node.lineno, id(node) in inside))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out.append((_target(node.module, a.name), node.lineno, id(node) in inside))
    return out


def _layer(module: str) -> tuple[int, str]:
    sub = module.split(".")[1] if module.count(".") else "api"  # siamese/__init__.py: the verbs
    return LAYERS[sub], sub


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}


def test_every_module_belongs_to_a_layer():
    assert {_layer(m)[1] for m in MODULES} <= set(LAYERS)


def test_imports_run_down_the_layers_only():
    wrong = []
    for m, path in MODULES.items():
        rank, sub = _layer(m)
        for t, line, _ in _imports(path):
            if t not in MODULES:
                continue
            t_rank, t_sub = _layer(t)
            if t_rank > rank or (t_rank == rank and t_sub != sub):
                wrong.append(f"{path.relative_to(REPO)}:{line} {m} imports {t}")
    assert not wrong, "imports that run up (or across) the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph, state, stack, cycles = _graph(), {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _heavy() -> set[str]:
    """Package modules that import a HEAVY module at module level, directly or through others."""
    direct, graph = set(), {}
    for m, path in MODULES.items():
        top = [(t, inner) for t, _, inner in _imports(path)]
        if any(t.split(".")[0] in HEAVY and not inner for t, inner in top):
            direct.add(m)
        graph[m] = {t for t, inner in top if t in MODULES and not inner}
    heavy, changed = set(direct), True
    while changed:
        changed = False
        for m, targets in graph.items():
            if m not in heavy and targets & heavy:
                heavy.add(m)
                changed = True
    return heavy


def test_function_level_imports_only_defer_heavy_modules():
    """Imports of the package's own modules inside functions are for deferring TensorFlow or dlib
    (start-up time, optional extras), never for dodging a cycle."""
    heavy, lazy = _heavy(), []
    for m, path in MODULES.items():
        if m == "siamese":  # its verbs import siamese.api on first use, so `import siamese` is instant
            continue
        for t, line, inner in _imports(path):
            if inner and t in MODULES and t not in heavy:
                lazy.append(f"{path.relative_to(REPO)}:{line} imports {t} inside a function")
    assert not lazy, "\n".join(lazy)


def test_modules_stay_readable():
    long = {str(p.relative_to(REPO)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_inference_and_applications_never_import_tensorflow():
    code = ("import sys\n"
            "import siamese.model, siamese.gallery, siamese.verification, siamese.clustering, siamese.faces\n"
            "import siamese.eval.calibration, siamese.eval.verify_calibration, siamese.eval.openset\n"
            "import siamese.eval.evaluate\n"
            "import siamese.commands.people, siamese.commands.evaluation, siamese.cli\n"
            "bad = [k for k in ('tensorflow', 'keras', 'dlib') if k in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("sub", sorted(s for s in LAYERS if s and s not in ("cli", "api")))
def test_each_subpackage_says_what_it_holds(sub):
    init = PACKAGE / sub / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc) > 40, f"{init}: a docstring saying what the subpackage holds"
