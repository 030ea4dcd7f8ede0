"""``parser/`` stays sans-I/O: no asyncio, sockets, clocks, settings or runtime imports."""

from __future__ import annotations

import ast
from pathlib import Path

PARSER = Path(__file__).resolve().parents[2] / "parser"
BANNED_MODULES = {
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "threading",
    "subprocess",
    "os",
    "uvloop",
    "gateway",
    "aiobotocore",
    "botocore",
    "boto3",
    "aiomqtt",
    "pydantic",
    "pydantic_settings",
    "structlog",
    "prometheus_client",
}
BANNED_CALLS = {
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "now",
    "utcnow",
    "open",
    "urandom",
}


def sources() -> list[Path]:
    files = sorted(PARSER.rglob("*.py"))  # subpackages too (parser/mqtt/)
    assert files, "parser/ has no modules?"
    return files


def test_parser_imports_nothing_that_does_io() -> None:
    for path in sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in BANNED_MODULES, f"{path.name} imports {name}"


def test_parser_reads_no_clock_and_opens_nothing() -> None:
    for path in sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert name not in BANNED_CALLS, f"{path.name}:{node.lineno} calls {name}()"
