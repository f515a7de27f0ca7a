"""tandem's layout, read from the code: checked by ``make lint``, drawn by ``make docs``.

``python tools/architecture.py check`` fails (exit 1) when the layout breaks
a rule the import contracts cannot express: a module of more than
``MAX_LINES`` lines, more than ``MAX_FLAT`` modules flat in ``tandem/``
besides ``__init__``, ``apps`` and the public twins of Django's modules, or
a module whose public functions and classes are not all in its
``__all__``. ``python tools/architecture.py diagram`` prints the layers
diagram that docs/concepts/architecture.md shows (the mkdocs hook
docs/_hooks/architecture.py puts it there at every build): the layers as
pyproject.toml's import contract lists them, what each package is (its
docstring's first line), and which layers each one really imports, as
import-linter's graph finds it.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tandem"
MAX_LINES = 500
MAX_FLAT = 6
# Flat modules that are not counted: the package itself, its app, and the
# public twins of Django's modules, which stay where users import them.
PUBLIC_TWINS = frozenset({"__init__", "apps", "forms", "models", "shortcuts", "transaction"})


def layers() -> list[list[str]]:
    """The layers contract of pyproject.toml, top first; each layer a list of modules."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]
    raise LookupError("pyproject.toml has no import-linter layers contract")


def _path(module: str) -> Path:
    relative = Path(*module.split("."))
    package = ROOT / relative / "__init__.py"
    return package if package.exists() else ROOT / relative.with_suffix(".py")


def summary(module: str) -> str:
    """The first line of a module's or package's docstring."""
    docstring = ast.get_docstring(ast.parse(_path(module).read_text())) or ""
    return docstring.splitlines()[0] if docstring else ""


def lines_of(module: str) -> int:
    """Lines of code of a module, or of every module of a package."""
    path = _path(module)
    files = path.parent.rglob("*.py") if path.name == "__init__.py" else [path]
    return sum(len(file.read_text().splitlines()) for file in files)


def layer_imports() -> dict[str, set[str]]:
    """For each module of the layers, the other layers' modules it imports (directly)."""
    import grimp

    graph = grimp.build_graph("tandem", exclude_type_checking_imports=True)
    named = [module for layer in layers() for module in layer]
    found: dict[str, set[str]] = {module: set() for module in named}
    for importer in named:
        for imported in named:
            if importer != imported and graph.chain_exists(importer, imported, as_packages=True):
                if _direct(graph, importer, imported):
                    found[importer].add(imported)
    return found


def _direct(graph, importer: str, imported: str) -> bool:
    inside = graph.find_descendants(importer) | {importer} if _is_package(importer) else {importer}
    targets = graph.find_descendants(imported) | {imported} if _is_package(imported) else {imported}
    return any(graph.find_modules_directly_imported_by(module) & targets for module in inside)


def _is_package(module: str) -> bool:
    return _path(module).name == "__init__.py"


def graph(imports: dict[str, set[str]]) -> str:
    """The layers as a Mermaid graph: one box per package, an arrow per import between layers."""
    lines = ["```mermaid", "graph TD"]
    for depth, layer in enumerate(layers(), start=1):
        lines.append(f'  subgraph L{depth}["layer {depth}"]')
        lines.extend(f'    {_node(module)}["{module.removeprefix("tandem.")}"]' for module in layer)
        lines.append("  end")
    for importer in sorted(imports):
        lines.extend(f"  {_node(importer)} --> {_node(imported)}" for imported in sorted(imports[importer]))
    lines.append("```")
    return "\n".join(lines)


def _node(module: str) -> str:
    return module.replace(".", "_")


def diagram() -> str:
    """The layers as Markdown: a graph, then a table, top layer first, with what each imports."""
    imports = layer_imports()
    rows = [
        graph(imports),
        "",
        "| layer | package or module | what it is | lines | imports from tandem |",
        "|---:|---|---|---:|---|",
    ]
    for depth, layer in enumerate(layers(), start=1):
        for module in layer:
            used = (
                ", ".join(f"`{name.removeprefix('tandem.')}`" for name in sorted(imports[module]))
                or "nothing"
            )
            rows.append(f"| {depth} | `{module}` | {summary(module)} | {lines_of(module)} | {used} |")
    return "\n".join(rows)


def _missing_from_all(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    public = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not node.name.startswith("_")
    ]
    declared: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            declared = set(ast.literal_eval(node.value))
    return [name for name in public if name not in declared]


def problems() -> list[str]:
    """Every way the layout breaks its rules, as messages."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(ROOT)
        count = len(path.read_text().splitlines())
        if count > MAX_LINES:
            found.append(f"{where}: {count} lines, more than {MAX_LINES}: split it along its seams")
        missing = _missing_from_all(path)
        if missing:
            found.append(f"{where}: public names missing from __all__: {', '.join(missing)}")
    flat = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in PUBLIC_TWINS)
    if len(flat) > MAX_FLAT:
        found.append(
            f"tandem/ has {len(flat)} flat modules ({', '.join(flat)}), more than {MAX_FLAT}: "
            "put the new one in the package of its layer (docs/concepts/architecture.md)"
        )
    return found


def main(argv: list[str]) -> int:
    """``check`` or ``diagram``."""
    command = argv[1] if len(argv) > 1 else "check"
    if command == "diagram":
        print(diagram())
        return 0
    if command != "check":
        print(f"usage: {argv[0]} check|diagram", file=sys.stderr)
        return 2
    found = problems()
    for message in found:
        print(message, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
