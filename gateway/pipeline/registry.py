"""Resolves codecs by name: built-ins, the ``gateway.codecs`` entry points and layout files.

A broken plugin or layout file costs only its own codec: the problem is recorded and reported when
that codec is asked for (or listed), and every other codec keeps working.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

from parser.ais140 import Ais140Codec
from parser.codec import Codec, CodecFactory, CodecOptions
from parser.errors import LayoutError
from parser.gt06 import Gt06Codec
from parser.json_codec import JsonCodec
from parser.layout import compile_layout
from parser.layout_codec import LayoutCodec
from parser.teltonika import TeltonikaCodec

ENTRY_POINT_GROUP = "gateway.codecs"
BUILTINS: dict[str, CodecFactory] = {
    "teltonika": TeltonikaCodec,
    "gt06": Gt06Codec,
    "ais140": Ais140Codec,
    "json": JsonCodec,
}


class UnknownCodecError(LookupError):
    """No usable codec of that name; the message says what is available or what went wrong."""


def default_layout_dirs() -> list[Path]:
    """The project's ``codecs/`` folder: beside the sources, or where the wheel installed it."""
    source_tree = Path(__file__).resolve().parents[2] / "codecs"
    installed = Path(sys.prefix) / "share" / "ev-gateway" / "codecs"
    return [source_tree if source_tree.is_dir() else installed]


@dataclass(frozen=True, slots=True)
class CodecSource:
    factory: CodecFactory | None
    origin: str
    problem: str | None = None


class CodecRegistry:
    def __init__(self, sources: dict[str, CodecSource]) -> None:
        self._sources = sources

    @classmethod
    def load(
        cls,
        layout_dirs: Sequence[Path] | None = None,
        *,
        plugins: bool = True,
        configured: Mapping[str, CodecFactory] | None = None,
    ) -> CodecRegistry:
        """Built-ins, plugins, layout files, then ``configured`` codecs (settings: named JSON
        mappings); a later name that clashes with an earlier one is reported, not used."""
        sources = {name: CodecSource(factory, "built-in") for name, factory in BUILTINS.items()}
        found: list[tuple[str, CodecSource]] = []
        if plugins:
            found += _plugins()
        dirs = default_layout_dirs() if layout_dirs is None else layout_dirs
        found += _layouts(dirs)
        found += [(name, CodecSource(f, "settings")) for name, f in (configured or {}).items()]
        for name, source in found:
            if name in sources:
                first = sources[name].origin
                problem = f"codec {name!r} from {source.origin} clashes with the one from {first}"
                # The first keeps working; the clash is reported by `problems()`.
                sources[name] = CodecSource(sources[name].factory, first, problem)
            else:
                sources[name] = source
        return cls(sources)

    def names(self) -> list[str]:
        return sorted(self._sources)

    def problems(self) -> dict[str, str]:
        return {n: s.problem for n, s in self._sources.items() if s.problem is not None}

    def create(self, name: str, options: CodecOptions | None = None) -> Codec:
        source = self._sources.get(name)
        if source is None:
            raise UnknownCodecError(f"unknown codec {name!r}; known: {', '.join(self.names())}")
        if source.factory is None:
            raise UnknownCodecError(f"codec {name!r} is unusable: {source.problem}")
        return source.factory(options or CodecOptions())


def _plugins() -> Iterable[tuple[str, CodecSource]]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.value}"
        try:
            factory = ep.load()
        except Exception as exc:  # a plugin's import error must not take the gateway down
            yield ep.name, CodecSource(None, origin, f"cannot load {ep.value}: {exc}")
            continue
        yield ep.name, CodecSource(factory, origin)


def _layouts(dirs: Sequence[Path]) -> Iterable[tuple[str, CodecSource]]:
    for directory in dirs:
        for path in sorted(directory.glob("*.toml")):
            try:
                layout = compile_layout(path.read_text(encoding="utf-8"), str(path))
            except (LayoutError, OSError, UnicodeDecodeError) as exc:
                yield path.stem, CodecSource(None, str(path), str(exc))
                continue
            yield layout.name, CodecSource(partial(LayoutCodec, layout), str(path))
