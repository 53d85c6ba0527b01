"""The package's layers, read from its imports (``ast``, nothing imported): drafting,
verification and the decoding loop never use training or the benchmark; verification
uses neither drafting nor the loop; drafting does not use the loop; no module imports one
that imports it back (no cycle). See docs/architecture.md."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fairseq_specdec"
# a package -> the packages of the plugin it must not import (directly or through any module)
FORBIDDEN = {
    "verification": {"drafting", "decoding", "training", "benchmark", "tasks", "criterions"},
    "drafting": {"decoding", "training", "benchmark", "tasks", "criterions"},
    "decoding": {"training", "benchmark", "tasks", "criterions"},
    "models": {"decoding", "training", "benchmark", "tasks", "criterions"},
    "training": {"benchmark", "tasks"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def plugin_imports(path: Path):
    """The plugin's modules that ``path`` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fairseq_specdec"):
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("fairseq_specdec"))
    return out


def graph():
    """module -> the plugin's modules it imports. Package roots (``__init__``) are left out as
    targets: importing any submodule runs its package's ``__init__`` first, whatever the
    layers (the benchmark's re-exports its ``cli``), so they are no layer of their own."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = {m for m, p in paths.items() if p.name != "__init__.py"}
    return {name: {m for m in plugin_imports(path) if m in modules and m != name} for name, path in paths.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def reachable(edges, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_layers_point_one_way():
    edges = graph()
    wrong = []
    for module in edges:
        banned = FORBIDDEN.get(package_of(module), set())
        wrong += [f"{module} -> {dep}" for dep in sorted(reachable(edges, module)) if package_of(dep) in banned]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycle():
    edges = graph()
    cycles = sorted(m for m in edges if m in reachable(edges, m))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The reader itself: an import from inside a function is found."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from fairseq_specdec.training.blocks import left_pad\n")
    assert "fairseq_specdec.training.blocks" in plugin_imports(path)
