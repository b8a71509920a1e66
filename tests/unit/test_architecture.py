"""Rules the layout keeps that an import graph cannot show (`lint-imports` checks the import rules)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from loadtest.harness.topology import PROJECT_ROOT

SDK_INTERNALS = PROJECT_ROOT / "src" / "mcp_cluster" / "sdk_internals.py"
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}  # public, despite the underscore


def sources() -> list[Path]:
    return sorted(
        path for folder in ("src", "app", "loadtest", "examples") for path in (PROJECT_ROOT / folder).rglob("*.py")
    )


def private_names(tree: ast.AST) -> list[str]:
    """`x._name` where `x` is not self or cls, and imports from modules whose path has a `_name` part."""
    nodes = list(ast.walk(tree))
    attributes = [
        f"line {node.lineno}: .{node.attr}"
        for node in nodes
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and node.attr not in NAMEDTUPLE_API
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    modules = [
        f"line {node.lineno}: from {node.module}"
        for node in nodes
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("mcp")
        and any(part.startswith("_") for part in node.module.split("."))
    ]
    return attributes + modules


def test_private_sdk_names_appear_in_one_module():
    elsewhere = {
        str(path.relative_to(PROJECT_ROOT)): names
        for path in sources()
        if path != SDK_INTERNALS and (names := private_names(ast.parse(path.read_text())))
    }
    assert elsewhere == {}
    assert private_names(ast.parse(SDK_INTERNALS.read_text())), "the check finds the names it looks for"


def test_every_module_says_what_it_is_for():
    missing = [str(p.relative_to(PROJECT_ROOT)) for p in sources() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def test_the_command_line_tools_do_not_import_the_sdk():
    """`app` loads its public names on first use: `python -m loadtest stack ...` starts in a tenth of the time."""
    modules = "loadtest.harness.stack, loadtest.experiments.matrix.run"
    probe = f"import sys, {modules}; print(sorted(m for m in sys.modules if m == 'mcp'))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_no_test_module_imports_another():
    """What tests share lives in tests/utils (or tests/servers, a server the tests run); lint-imports checks the
    tiers against each other, this every module against every other."""
    shared = ("tests.utils", "tests.servers", "tests.plugins")
    imported = {}
    for path in (PROJECT_ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("tests.") and not name.startswith(shared):
                    imported.setdefault(str(path.relative_to(PROJECT_ROOT)), []).append(name)
    assert imported == {}


def test_the_public_api_names_the_same_objects_for_a_type_checker_and_at_run_time():
    """`mcp_cluster/__init__.py` imports its public names lazily; its TYPE_CHECKING block must name the same ones."""
    import mcp_cluster

    tree = ast.parse((PROJECT_ROOT / "src" / "mcp_cluster" / "__init__.py").read_text())
    checked = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mcp_cluster.")
        for alias in node.names
    }
    assert checked == {(module, name) for name, module in mcp_cluster._PUBLIC.items()}
    assert sorted(mcp_cluster.__all__) == sorted(mcp_cluster._PUBLIC)
    assert all(getattr(mcp_cluster, name) is not None for name in mcp_cluster.__all__)
