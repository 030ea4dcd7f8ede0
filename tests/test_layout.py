"""The test tree mirrors the code, and test files share helpers through support modules.

Importing a test module as a library ties two test files together and hides what is shared:
shared code lives in modules pytest does not collect (``streams.py``, ``harness.py``,
``gatewayproc.py``) or as fixtures in a ``conftest.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
GATEWAY = ROOT / "gateway"
# Packages tested outside tests/gateway/<package>/, and where: the lake's tests came with it.
TESTED_ELSEWHERE = {"lake": TESTS / "lake"}


def is_test_module(dotted: str) -> bool:
    """What pytest collects or loads as a test file (python_files default, and conftest)."""
    name = dotted.rpartition(".")[2]
    return name.startswith("test_") or name.endswith("_test") or name == "conftest"


def imported_modules(source: str, package: str) -> list[str]:
    """Every module ``source`` (a module of ``package``) imports, dotted and absolute; ``from a
    import b`` gives ``a`` and ``a.b``, since ``b`` may be a module."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                module = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [module])])
            found += [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return found


def has_code(package: Path) -> bool:
    """True if any module of ``package`` holds more than a docstring."""
    for path in package.rglob("*.py"):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        if body:
            return True
    return False


def test_no_test_module_imports_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for module in imported_modules(
            path.read_text(encoding="utf-8"), ".".join(path.relative_to(ROOT).parent.parts)
        )
        if module.startswith("tests.") and is_test_module(module)
    ]
    assert offenders == []


def test_the_import_check_sees_every_form_of_import() -> None:
    source = (
        "import tests.parser.test_gt06\n"
        "from tests.gateway.notify import test_gateway, notes\n"
        "from .test_dispatcher import until\n"
        "from .. import conftest\n"
        "from tests.gateway.gatewayproc import read_records\n"
    )
    imported = imported_modules(source, "tests.gateway.notify")
    assert [m for m in imported if is_test_module(m)] == [
        "tests.parser.test_gt06",
        "tests.gateway.notify.test_gateway",
        "tests.gateway.notify.test_dispatcher",
        "tests.gateway.conftest",
    ]


def test_every_gateway_package_with_code_has_its_test_package() -> None:
    packages = [
        p for p in sorted(GATEWAY.iterdir()) if (p / "__init__.py").is_file() and has_code(p)
    ]
    assert packages
    missing = [
        f"gateway/{p.name}/ has no tests/gateway/{p.name}/"
        for p in packages
        if not TESTED_ELSEWHERE.get(p.name, TESTS / "gateway" / p.name).is_dir()
    ]
    assert missing == []
    assert all((GATEWAY / name).is_dir() for name in TESTED_ELSEWHERE)  # no stale exception
