"""Which build of the parser the suite runs: mypyc's compiled modules or the pure sources.

``make test`` runs the suite twice and names the build of each pass in EXPECT_PARSER_BUILD, so
a pass that silently imports the other build (a .so left behind, one that failed to build or
to load) fails here instead of passing as the build it did not test.
"""

from __future__ import annotations

import importlib
import os

import pytest

from mypyc_build import MODULES, SUFFIX, module_name

EXPECTED = os.environ.get("EXPECT_PARSER_BUILD")


def compiled() -> dict[str, bool]:
    """Each listed module: imported from its compiled extension?"""
    return {
        path: str(importlib.import_module(module_name(path)).__file__).endswith(SUFFIX)
        for path in MODULES
    }


@pytest.mark.skipif(EXPECTED is None, reason="make test names the build of each pass")
def test_every_listed_module_is_imported_from_the_build_the_pass_names() -> None:
    assert EXPECTED in ("compiled", "pure")
    assert compiled() == dict.fromkeys(MODULES, EXPECTED == "compiled")
