"""The codec registry: built-ins, layout directories, entry points, broken sources."""

from __future__ import annotations

from pathlib import Path

from gateway.pipeline.registry import CodecRegistry, UnknownCodecError
from gateway.pipeline.settings import JsonCodecSettings, json_codec_factories
from parser.layout_codec import LayoutCodec
from tests.parser.acme2 import ACME2, check_acme


def test_new_format_from_a_toml_file_alone(tmp_path: Path) -> None:
    (tmp_path / "acme2.toml").write_text(ACME2)
    registry = CodecRegistry.load([tmp_path], plugins=False)
    assert registry.names() == ["acme2", "ais140", "gt06", "json", "teltonika"]
    check_acme(registry.create("acme2"))


def test_configured_json_mappings_are_codecs_that_cannot_shadow_others() -> None:
    mappings = {"acme": JsonCodecSettings(ts="time"), "evb1": JsonCodecSettings()}
    registry = CodecRegistry.load(configured=json_codec_factories(mappings), plugins=False)
    acme = registry.create("acme")
    assert acme.name == "acme" and acme.decode(b'{"time": 1}')[0].ts_ms == 1000
    assert "clashes" in registry.problems()["evb1"]
    assert isinstance(registry.create("evb1"), LayoutCodec)  # the layout file's, not shadowed


def test_default_registry_has_the_three_codecs() -> None:
    registry = CodecRegistry.load()
    assert {"evb1", "gt06", "teltonika"} <= set(registry.names())
    assert registry.problems() == {}


def test_bad_layout_files_cost_only_their_codec(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(ACME2.replace('type = "i16"', 'type = "i17"'))
    registry = CodecRegistry.load([tmp_path], plugins=False)
    assert "fields[1].type" in registry.problems()["broken"]
    assert registry.create("teltonika").name == "teltonika"
    try:
        registry.create("broken")
    except UnknownCodecError as exc:
        assert "unusable" in str(exc) and "i17" in str(exc)
    else:
        raise AssertionError("a broken layout must not create a codec")


def test_name_clash_is_reported(tmp_path: Path) -> None:
    (tmp_path / "dup.toml").write_text(ACME2.replace('name = "acme2"', 'name = "gt06"'))
    registry = CodecRegistry.load([tmp_path], plugins=False)
    assert "clashes" in registry.problems()["gt06"]


def test_unknown_codec_lists_known_ones() -> None:
    try:
        CodecRegistry.load().create("nope")
    except UnknownCodecError as exc:
        assert "teltonika" in str(exc)
    else:
        raise AssertionError("unknown codec must raise")
