"""The event file (TOML): the event's name, hashtags and sources.

Credentials never live in the file: a source names the environment variables it
reads (`backchannel sources` lists them). Each network registers a builder in
`SOURCE_TYPES`; this module only parses and validates.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backchannel.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SourceType:
    network: str
    summary: str
    settings: Mapping[str, str]  # setting -> help
    env: Mapping[str, str] = field(default_factory=dict)  # environment variable -> help
    build: Callable[[EventFile, Mapping[str, Any]], Any] | None = None


@dataclass(frozen=True, slots=True)
class EventFile:
    name: str
    hashtags: tuple[str, ...]
    sources: tuple[Mapping[str, Any], ...]
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def secret(self, variable: str) -> str:
        value = self.environ.get(variable, "")
        if not value:
            raise ConfigError(f"set the environment variable {variable}")
        return value


SOURCE_TYPES: dict[str, SourceType] = {}
# The modules under backchannel.sources that register a network when imported.
NETWORK_MODULES = ("mastodon", "bluesky", "x", "youtube", "feeds", "files")


def register(source_type: SourceType) -> SourceType:
    SOURCE_TYPES[source_type.network] = source_type
    return source_type


def source_types() -> dict[str, SourceType]:
    import importlib

    for name in NETWORK_MODULES:
        try:
            importlib.import_module(f"backchannel.sources.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"backchannel.sources.{name}":
                raise
    return SOURCE_TYPES


_TAG = re.compile(r"^#?[\w]{1,100}$")


def parse(text: str, environ: Mapping[str, str] | None = None) -> EventFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the event file is not valid TOML: {exc}") from exc
    event = data.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("name"), str) or not event["name"]:
        raise ConfigError("the event file needs [event] with a name")
    hashtags = event.get("hashtags", [])
    if not isinstance(hashtags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in hashtags):
        raise ConfigError('event.hashtags must be a list of hashtags such as ["slz"]')
    source_types()
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        raise ConfigError("sources must be [[sources]] tables")
    for i, source in enumerate(sources, 1):
        network = source.get("network")
        if network not in SOURCE_TYPES:
            known = ", ".join(sorted(SOURCE_TYPES)) or "none registered"
            raise ConfigError(f"source {i}: unknown network {network!r} (known: {known})")
        unknown = set(source) - {"network", "interval", *SOURCE_TYPES[network].settings}
        if unknown:
            raise ConfigError(f"source {i} ({network}): unknown setting(s) {', '.join(sorted(unknown))}")
        interval = source.get("interval", 20)
        if not isinstance(interval, int | float) or interval < 1:
            raise ConfigError(f"source {i} ({network}): interval must be a number of seconds >= 1")
    return EventFile(
        name=event["name"],
        hashtags=tuple(t.lstrip("#").lower() for t in hashtags),
        sources=tuple(sources),
        environ=dict(os.environ if environ is None else environ),
    )


def load(path: Path, environ: Mapping[str, str] | None = None) -> EventFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the event file {path}: {exc}") from exc
    return parse(text, environ)


def build_sources(event: EventFile) -> list[Any]:
    sources = []
    for settings in event.sources:
        source_type = SOURCE_TYPES[settings["network"]]
        if source_type.build is None:
            raise ConfigError(f"{source_type.network} sources cannot be built yet")
        # A builder may return several sources (one per hashtag, say).
        built = source_type.build(event, settings)
        sources.extend(built if isinstance(built, list) else [built])
    return sources
