"""Imports run one way: each module of the package imports only its own layer or lower ones,
and no import, at module level or inside a function, closes a cycle. A module uses only the
public names of the others (one implementation per decision: what another module needs is
part of its public API, never a copy or a reach into its private helpers).

A new module gets a row in LAYERS. An import inside a function is allowed only where LAZY
says why (a heavy engine loaded only by the job that runs it).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "workflow" / "bitbudget"

#: lowest first; a module imports from its own layer or the ones before it
LAYERS = {
    "base": ["__init__", "errors", "versions", "schema", "artifacts", "logs", "interpreter", "revisions", "gpu_slots",
             "provenance"],
    "settings": ["config", "kvspec", "specs", "enginespec"],
    "stages": ["memory", "forcing", "tasks", "datasets", "shards", "grading", "stats", "item_response",
               "llmcompressor_quantize", "capabilities", "quantize", "tinymodels", "kv", "kv.base", "kv.factory",
               "kv.quantized", "kv.rkv", "kv.streaming", "backends", "backends.draws", "backends.sampler",
               "backends.hf", "backends.simulated", "backends.vllm", "backends.vllm_sampler", "generate", "aggregate",
               "frontier", "threshold", "findings", "fit", "adaptive.schedule",
               "adaptive.predictive", "adaptive.decisions", "adaptive.closing", "adaptive", "report", "throughput"],
    "study": ["preflight", "study", "rounds", "plan", "recommend"],
    "commands": ["cli", "__main__"],
}
#: (importer, imported): why the import waits until a function runs
LAZY = {
    ("generate", "backends.hf"): "torch and transformers, loaded only by a job that runs the HF engine",
}


def module_name(path: Path) -> str:
    """"kv.factory"; "__init__" for the package's own __init__.py."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_base(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement imports from."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py" and importer != "__init__"
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = ".".join(["bitbudget", *package[: len(package) - node.level + 1]])
    return f"{base}.{node.module}" if node.module else base


def package_module(name: str) -> str | None:
    """"threshold" for "bitbudget.threshold"; None for a name outside the package's modules."""
    if name != "bitbudget" and not name.startswith("bitbudget."):
        return None
    short = name.removeprefix("bitbudget").lstrip(".")
    return short if short in MODULES else None


def imported_modules(importer: str, node) -> set[str]:
    """The package's modules an import statement names (a name of the package's __init__, such as
    __version__, counts as none: that module imports nothing)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = import_base(importer, node)
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    found = set()
    for name in names:
        short = package_module(name)
        if short is not None and short != importer and not importer.startswith(short + "."):
            found.add(short)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(importer: str, source: str) -> list[str]:
    """Private names of the package's other modules that ``source`` (the module ``importer``)
    imports (``from .threshold import _x``) or reads through a module it imports
    (``threshold._x``)."""
    tree = ast.parse(source)
    modules, found = {}, []  # local name -> the package module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if package_module(alias.name) and alias.asname:
                    modules[alias.asname] = package_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = import_base(importer, node)
            for alias in node.names:
                module = package_module(f"{base}.{alias.name}")
                if module is not None:
                    modules[alias.asname or alias.name] = module
                elif package_module(base) not in (None, importer) and _private(alias.name):
                    found.append(f"{package_module(base)}.{alias.name} (line {node.lineno})")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and modules[node.value.id] != importer and _private(node.attr)):
            found.append(f"{modules[node.value.id]}.{node.attr} (line {node.lineno})")
    return found


def imports() -> list[tuple[str, str, bool, int]]:
    """(importer, imported, inside a function, line) for every import of the package's own modules."""
    out = []
    for importer, path in MODULES.items():
        tree = ast.parse(path.read_text())
        in_function = {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out += [(importer, target, id(node) in in_function, node.lineno)
                        for target in imported_modules(importer, node)]
    return out


LAYER_OF = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER_OF)) == [], "give each new module a row in LAYERS"
    assert sorted(set(LAYER_OF) - set(MODULES)) == [], "LAYERS names a module that does not exist"


def test_no_module_imports_a_higher_layer():
    names = list(LAYERS)
    upward = [f"{importer} ({names[LAYER_OF[importer]]}) imports {imported} ({names[LAYER_OF[imported]]}), "
              f"line {line}" for importer, imported, _, line in imports() if LAYER_OF[imported] > LAYER_OF[importer]]
    assert upward == []


def test_functions_import_the_package_only_where_said_why():
    inner = {(importer, imported): line for importer, imported, in_function, line in imports() if in_function}
    unexplained = [f"{importer} imports {imported} inside a function, line {line}"
                   for (importer, imported), line in inner.items() if (importer, imported) not in LAZY]
    assert unexplained == []
    assert set(LAZY) <= set(inner), "LAZY lists an import that is no longer inside a function"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_uses_a_private_name_of_another():
    """Adaptive sampling, the fit and the verdicts' bootstrap share the public API of frontier,
    threshold and findings; none of them reaches into another's helpers."""
    used = {importer: private_uses(importer, path.read_text()) for importer, path in MODULES.items()}
    assert {importer: names for importer, names in used.items() if names} == {}


def test_private_uses_are_seen():
    source = ("from bitbudget import threshold as thr\nfrom bitbudget.findings import _analysis\n"
              "from bitbudget.adaptive import decisions\nthr._SCORE_TIE\nthr.SCORE_TIE\ndecisions._touched\n")
    assert private_uses("adaptive.closing", source) == [
        "findings._analysis (line 2)", "threshold._SCORE_TIE (line 4)", "adaptive.decisions._touched (line 6)"]
    assert private_uses("adaptive.decisions", "from bitbudget.adaptive import decisions\ndecisions._touched\n") == []


def test_no_import_cycle():
    edges: dict[str, set[str]] = {}
    for importer, imported, _, _ in imports():
        edges.setdefault(importer, set()).add(imported)
    assert cycles(edges) == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert cycles(edges) == expected


def test_imports_inside_functions_are_seen():
    source = "def f():\n    from bitbudget.study import build_study\n"
    (node,) = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert imported_modules("config", node) == {"study"}
    relative = ast.parse("from .adaptive import CURTAIL_DRAWS").body[0]
    assert imported_modules("config", relative) == {"adaptive"}
    sibling = ast.parse("from .decisions import Decisions").body[0]
    assert imported_modules("adaptive.closing", sibling) == {"adaptive.decisions"}
    assert imported_modules("kv.factory", ast.parse("from .rkv import RKVCache").body[0]) == {"kv.rkv"}
