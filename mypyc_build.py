"""The parser's hot modules compiled with mypyc, in place beside their sources (issue 17).

    python mypyc_build.py           compile them (``make setup``), or reuse the last build
    python mypyc_build.py --remove  remove them: the same sources run as pure Python (``make pure``)
    python mypyc_build.py --installed  exit status 0 if they are in place

Python imports ``parser/crc.cpython-311-x86_64-linux-gnu.so`` before ``parser/crc.py`` when both
are there, so the compiled build is simply the extension modules sitting beside the sources.
A build is kept in ``build/mypyc/<key>``, the key hashing every parser source (mypyc reads the
types of what a compiled module imports), this file and the interpreter and mypy versions:
``make test`` removes the modules for its pure pass and puts back the same build in a second.
Without a C compiler, the Python headers or mypy, this prints one line and the parser stays pure.

Modules that define msgspec Structs stay interpreted: mypyc builds a class with a foreign
metaclass through the metaclass but drops its class keywords (``frozen=True``, ``gc=False``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / "build" / "mypyc"
INSTALLED = CACHE / "installed"  # the key of the build in the tree, written once all of it is
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")

# The compiled build, one list in two groups. Measured with bench/decode.py, bench/mqtt_codec.py
# and bench/rules.py against the pure build; a module stays off it unless it pays. layout.py
# does not: an EVB1 layout's decoder is Python source it generates and execs at load time.
# Each group is one C extension: calls within it are direct C calls, and the groups compile in
# parallel (each includes mypyc's runtime, most of the C compiler's time).
GROUPS = {
    "parser.codecs": (
        "parser/crc.py",
        "parser/resync.py",
        "parser/teltonika.py",
        "parser/gt06.py",
        "parser/gt06_blocks.py",
        "parser/gt06_packets.py",
        "parser/ais140.py",
        "parser/json_codec.py",
        "parser/rules.py",
        "parser/proxy_protocol.py",
    ),
    "parser.mqtt.codec": (
        "parser/mqtt/wire.py",
        "parser/mqtt/properties.py",
        "parser/mqtt/framing.py",
        "parser/mqtt/decode.py",
        "parser/mqtt/encode.py",
        "parser/mqtt/aliases.py",
        "parser/mqtt/connection.py",
        "parser/mqtt/client.py",
    ),
}
MODULES = tuple(path for paths in GROUPS.values() for path in paths)


def module_name(path: str) -> str:
    """``parser/mqtt/wire.py`` -> ``parser.mqtt.wire``."""
    return path.removesuffix(".py").replace("/", ".")


def build_key() -> str:
    """What the generated code depends on: a change to any of it means a new build."""
    digest = hashlib.sha256()
    for part in (sys.version, importlib.metadata.version("mypy"), SUFFIX, *MODULES):
        digest.update(part.encode() + b"\0")
    for source in [Path(__file__).resolve(), *sorted((ROOT / "parser").rglob("*.py"))]:
        digest.update(str(source.relative_to(ROOT)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def missing_tool() -> str | None:
    """Why this machine cannot compile, or None when it can."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h)"
    if importlib.util.find_spec("mypyc") is None:
        return "no mypyc (make setup installs it with the test tools)"
    if importlib.util.find_spec("setuptools") is None:
        return "no setuptools in this environment"
    return None


def installed() -> list[Path]:
    """Every compiled module in the tree, including the build's shared library at the root."""
    return [*(ROOT / "parser").rglob(f"*{SUFFIX}"), *ROOT.glob(f"*__mypyc{SUFFIX}")]


def remove() -> None:
    INSTALLED.unlink(missing_ok=True)
    for path in installed():
        path.unlink()


def stale() -> str | None:
    """Why the compiled modules in the tree are not the build of these sources, or None."""
    if installed() and not (INSTALLED.exists() and INSTALLED.read_text() == build_key()):
        return (
            "the compiled parser modules are not built from these sources: "
            "run make compiled (or make pure)"
        )
    return None


def compile_into(target: Path) -> list[Path]:
    """Run mypyc and the C compiler (one process per core) into target; the built modules."""
    # Imported here: where mypyc is missing, the rest of this file still works (missing_tool).
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # type: ignore[import-untyped]  # noqa: PLC0415

    os.chdir(ROOT)  # mypyc names modules by their path and reads [tool.mypy] from here
    c_dir = target / "c"
    extensions = mypycify(
        [f"--cache-dir={target / 'mypy'}", *MODULES],
        separate=[(list(paths), name) for name, paths in GROUPS.items()],
        target_dir=str(c_dir),
    )
    # setup() would also read pyproject.toml's [project] table, which the venv's setuptools
    # need not understand; a bare Distribution runs build_ext alone.
    distribution = Distribution({"name": "ev-gateway-mypyc", "ext_modules": extensions})
    command = distribution.get_command_obj("build_ext")
    command.build_lib = str(target / "lib")
    command.build_temp = str(target / "temp")
    command.parallel = os.cpu_count() or 1
    distribution.run_command("build_ext")
    return sorted((target / "lib").rglob(f"*{SUFFIX}"))


def install(built: list[Path], lib: Path) -> None:
    """Copy the build into the tree, each file replaced whole (an import never sees half)."""
    remove()
    for source in built:
        destination = ROOT / source.relative_to(lib)
        partial = destination.with_name(destination.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(destination)


def build() -> int:
    reason = missing_tool()
    if reason is not None:
        remove()
        print(f"mypyc_build: {reason}: the parser runs as pure Python")
        return 0
    key = build_key()
    target = CACHE / key
    done = target / "done"
    if done.exists():
        built = [target / "lib" / line for line in done.read_text().split()]
    else:
        shutil.rmtree(CACHE, ignore_errors=True)  # older builds: only the current one is reused
        built = compile_into(target)
        done.write_text("".join(f"{p.relative_to(target / 'lib')}\n" for p in built))
    install(built, target / "lib")
    INSTALLED.write_text(key)
    print(f"mypyc_build: {len(MODULES)} parser modules compiled (build {key})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--remove", action="store_true", help="remove the compiled modules")
    action.add_argument("--installed", action="store_true", help="exit 0 if they are in place")
    args = parser.parse_args()
    if args.installed:
        return 0 if installed() and stale() is None else 1
    if args.remove:
        remove()
        return 0
    return build()


if __name__ == "__main__":
    sys.exit(main())
