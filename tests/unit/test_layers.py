"""``core`` is built in floors; each module imports only from its own floor or the floors below it.

    foundation (core/decision.py, errors.py, files.py, defaults.py, quiet.py)
    → data → detectors → evaluation → runs → cli

An upward import (a detector reaching into ``core.runs`` for its save helpers, say) is how cycles creep
in and why they were hidden inside functions; this test reads every ``import`` in ``core``, at module
level and inside functions, and names each one that goes up. Run it alone with
``python -m pytest tests/unit/test_layers.py``.
"""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
FOUNDATION = {"decision", "errors", "files", "defaults", "quiet", "__init__"}
FLOORS = ["foundation", "data", "detectors", "evaluation", "runs", "cli"]


def floor_of(module: str) -> int:
    """The floor of ``core.<part>...`` (``core`` alone is the package's docstring: the foundation)."""
    parts = module.split(".")[1:] or ["__init__"]
    if parts[0] in FOUNDATION:
        return 0
    if parts[0] == "__main__":
        return FLOORS.index("cli")
    return FLOORS.index(parts[0])


def core_imports(source: str, package: str):
    """(line, module) of every import of ``core`` in ``source``, a module of ``package``, at any depth."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:   # relative: resolve against this module's package
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module == "core" or module.startswith("core."):
                yield node.lineno, module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "core" or alias.name.startswith("core."):
                    yield node.lineno, alias.name


def upward_imports() -> list[str]:
    found = []
    for path in sorted(CORE.rglob("*.py")):
        module = ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
        own = floor_of(module)
        for line, target in core_imports(path.read_text(encoding="utf-8"), module.rsplit(".", 1)[0]):
            if floor_of(target) > own:
                found.append(f"{path.relative_to(CORE.parent)}:{line} ({FLOORS[own]}) imports {target} "
                             f"({FLOORS[floor_of(target)]})")
    return found


def test_no_module_in_core_imports_from_a_floor_above_its_own():
    assert upward_imports() == []


def test_the_check_sees_imports_inside_functions():
    """The check must read function-level imports, where upward ones used to hide."""
    source = "import numpy\n\nclass A:\n    def f(self):\n        from ..runs.bundles import save_bundle\n" \
             "        import core.evaluation.metrics\n"
    found = [module for _, module in core_imports(source, "core.detectors")]
    assert found == ["core.runs.bundles", "core.evaluation.metrics"]
    assert all(floor_of(module) > floor_of("core.detectors.autoencoder.detector") for module in found)


def test_no_streamlit_in_core():
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] in ("streamlit", "dashboard") for name in names), path


if __name__ == "__main__":
    print("\n".join(upward_imports()) or "no upward imports")
