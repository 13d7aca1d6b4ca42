"""Imports run one way: each module of the package imports only its own layer or lower ones,
and no import, at module level or inside a function, closes a cycle.

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
    "settings": ["config", "kvspec"],
    "stages": ["memory", "forcing", "tasks", "datasets", "shards", "grading", "stats", "item_response",
               "llmcompressor_quantize", "capabilities", "quantize", "tinymodels", "kv", "kv.base", "kv.factory",
               "kv.quantized", "kv.rkv", "kv.streaming", "backends", "backends.draws", "backends.sampler",
               "backends.hf", "backends.simulated", "backends.vllm", "backends.vllm_sampler", "generate", "aggregate",
               "frontier", "threshold", "findings", "fit", "adaptive",
               "report", "throughput"],
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


def imported_modules(importer: str, node) -> set[str]:
    """The package's modules an import statement names (a name of the package's __init__, such as
    __version__, counts as none: that module imports nothing)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            is_package = MODULES[importer].name == "__init__.py" and importer != "__init__"
            package = importer.split(".") if is_package else importer.split(".")[:-1]
            base = ".".join(["bitbudget", *package[: len(package) - node.level + 1]])
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    found = set()
    for name in names:
        if name == "bitbudget" or name.startswith("bitbudget."):
            short = name.removeprefix("bitbudget").lstrip(".")
            if short in MODULES and short != importer and not importer.startswith(short + "."):
                found.add(short)
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
    assert imported_modules("kv.factory", ast.parse("from .rkv import RKVCache").body[0]) == {"kv.rkv"}
