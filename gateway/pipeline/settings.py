"""Settings of the pipeline (``[pipeline]``) and of the codecs it builds from configuration
(``[json_codecs.NAME]``: named JSON field mappings the codec registry offers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pydantic import Field, model_validator

from gateway.common.settings_base import Section
from parser.codec import CodecFactory, CodecOptions
from parser.json_codec import JsonCodec, JsonFields


class AccumulatorSettings(Section):
    """The most one journal write of a stream holds. The journal group-commits: a write starts
    as soon as the previous one finished and takes what arrived meanwhile, up to these bounds,
    so ACKs never wait for a linger (the Kinesis shippers linger: ``sink.kinesis.linger_ms``).

    The bounds must hold what arrives during one write: a stream writes one batch per round
    trip through the event loop (executor, fsync, back to the writer task), and under load that
    round trip is a loop turn or two, each turn reading every connection's window of frames
    (50 MQTT clients x 64 in flight: 3,200 frames). At 500 records a write, ``accepted`` (whose
    ACKs do not wait for the journal, so nothing else slows the devices) outran the journal: the
    memory budget filled and reading and writing took turns, readers paused for a third of a
    second at a time (issue 17). ``max_bytes`` is a quarter of the default memory budget.
    """

    max_records: int = Field(default=50_000, ge=1, le=100_000)
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)


class PipelineSettings(Section):
    # One memory budget for everything accepted but not yet written: above the high watermark
    # every reader pauses, below the low watermark they resume.
    high_water_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    low_water_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    raw: AccumulatorSettings = AccumulatorSettings()
    parsed: AccumulatorSettings = AccumulatorSettings()

    @model_validator(mode="after")
    def _watermarks(self) -> PipelineSettings:
        if self.low_water_bytes >= self.high_water_bytes:
            raise ValueError("low_water_bytes must be below high_water_bytes")
        return self


class JsonCodecSettings(Section):
    """A named ``json`` codec: where the canonical fields are in a device's documents.

    ``[json_codecs.acme]`` makes a codec ``acme`` that routes can name; its raw records carry
    that name, so ``gateway replay`` with the same settings decodes them the same way. Paths
    are dotted (``gps.lat``); ``""`` skips a field.
    """

    ts: str | None = "ts"
    kind: str | None = "kind"
    lat: str | None = "lat"
    lon: str | None = "lon"
    alt_m: str | None = "alt_m"
    speed_kmh: str | None = "speed_kmh"
    heading_deg: str | None = "heading_deg"
    satellites: str | None = "satellites"
    metrics_object: str | None = "metrics"
    metrics: dict[str, str] = Field(default_factory=dict)
    max_frame_bytes: int | None = Field(default=None, ge=16)

    def fields(self) -> JsonFields:
        # TOML has no null: an empty path skips the field.
        paths = {
            k: v or None for k, v in self.model_dump(exclude={"metrics", "max_frame_bytes"}).items()
        }
        return JsonFields(**paths, metrics=tuple(sorted(self.metrics.items())))

    def factory(self, name: str) -> CodecFactory:
        """The registry's factory for the codec ``name`` this mapping defines."""
        fields = self.fields()

        def create(options: CodecOptions) -> JsonCodec:
            if options.max_frame_bytes is None and self.max_frame_bytes is not None:
                options = replace(options, max_frame_bytes=self.max_frame_bytes)
            return JsonCodec(options, fields, name)

        return create


def json_codec_factories(
    json_codecs: Mapping[str, JsonCodecSettings],
) -> dict[str, CodecFactory]:
    return {name: mapping.factory(name) for name, mapping in json_codecs.items()}
