"""The lock: what `make setup` installs is exactly what constraints.txt pins.

A fresh machine resolves `>=` ranges to whatever is newest that day (msgspec 0.23 once changed the
published schemas under a clean clone); constraints.txt pins every package, direct and transitive,
and these tests fail when an installed package escaped it.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt: not an exact pin: {line!r}"
        found[canonical(match[1])] = match[2]
    return found


def project_requirements() -> set[str]:
    """Names of the project's direct dependencies, runtime and test extras."""
    requires = metadata.requires("ev-gateway") or []
    return {canonical(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in requires}


def test_every_direct_dependency_is_pinned() -> None:
    missing = project_requirements() - set(pins())
    assert not missing, f"direct dependencies without a pin in constraints.txt: {sorted(missing)}"


def test_installed_project_dependencies_match_their_pins() -> None:
    """Every installed distribution the lock names has the locked version."""
    locked = pins()
    wrong = {}
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name in locked and dist.version != locked[name]:
            wrong[name] = (dist.version, locked[name])
    assert not wrong, f"installed (version, locked): {wrong}; run make setup or make lock"


def test_makefile_installs_through_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in makefile.splitlines() if "$(BIN)/python -m pip install" in line]
    assert installs, "make setup installs nothing?"
    assert all("-c constraints.txt" in line for line in installs), installs
