"""``gateway check-config``: validate a settings file like ``gateway run`` would; print every
error (exit 2) or one ``ok`` line per part."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path)
    p.add_argument(
        "--skip-files",
        action="store_true",
        help="list the certificate and password files it names that are missing here instead "
        "of refusing them (an example, or settings for another host)",
    )


def run(args: argparse.Namespace) -> int:
    return check_config(args.file, skip_files=args.skip_files)


def check_config(path: Path, *, skip_files: bool = False) -> int:
    """Validate ``path`` like ``gateway run`` would, codec names included; with ``skip_files``
    the files it names need not exist here (they are listed)."""
    from gateway.bridge.settings import unknown_codecs  # noqa: PLC0415
    from gateway.common.settings_base import MISSING_FILES  # noqa: PLC0415
    from gateway.pipeline.registry import CodecRegistry, default_layout_dirs  # noqa: PLC0415
    from gateway.pipeline.settings import json_codec_factories  # noqa: PLC0415
    from gateway.settings import ConfigError, load_settings  # noqa: PLC0415

    missing: list[Path] = []
    token = MISSING_FILES.set(missing if skip_files else None)
    try:
        settings = load_settings(path)
    finally:
        MISSING_FILES.reset(token)
    registry = CodecRegistry.load(
        [*default_layout_dirs(), *settings.layout_dirs],
        configured=json_codec_factories(settings.json_codecs),
    )
    problems = [
        f"listeners.{i}.codec: unknown codec {ls.codec!r}; known: {', '.join(registry.names())}"
        for i, ls in enumerate(settings.listeners)
        if ls.codec not in registry.names()
    ]
    problems += [
        f"mqtt_listeners.{i}.routes.{j}.codec: unknown codec {route.codec!r}"
        for i, ms in enumerate(settings.mqtt_listeners)
        for j, route in enumerate(ms.routes)
        if route.codec not in registry.names()
    ]
    if settings.bridge is not None:
        problems += unknown_codecs(settings.bridge, registry.names())
    if problems:
        raise ConfigError(problems)
    print(f"{path}: ok ({len(settings.listeners)} listeners)")
    if settings.bridge is not None:
        b = settings.bridge
        print(
            f"{path}: bridge ok ({len(b.sources)} sources, {len(b.routes)} routes, "
            f"{len(b.destinations)} destinations)"
        )
    for file in dict.fromkeys(missing):  # each once, in the order named
        print(f"{path}: {file}: missing here, needed where these settings run")
    return 0
