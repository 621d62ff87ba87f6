"""Settings: the only module that reads the environment (prefix BACKCHANNEL_).

Each setting is declared once, with its help text; the README lists them all and a
test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str
    help: str

    @property
    def env(self) -> str:
        return f"BACKCHANNEL_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "backchannel.db", "Database URL or SQLite file path (`postgresql://…` for PostgreSQL)."),
    Setting("log_level", "INFO", "Logging level (DEBUG, INFO, WARNING, ERROR)."),
)


def setting(name: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    for s in SETTINGS:
        if s.name == name:
            return env.get(s.env, s.default)
    raise KeyError(name)
