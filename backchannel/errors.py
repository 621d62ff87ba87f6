"""One exception tree for backchannel; library errors are translated at the boundary."""

from __future__ import annotations


class BackchannelError(Exception):
    """Base of every error backchannel raises on purpose."""


class StoreError(BackchannelError):
    pass


class DatabaseFailed(StoreError):
    """The database failed for good (disk full, read-only, permission denied, or down
    longer than the retry budget). `stored` is how many messages the failing command
    had stored before it, when it was storing any."""

    def __init__(self, reason: str, *, stored: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stored = stored


class PayloadError(BackchannelError):
    """An upstream record or archive line that cannot be understood."""


class ConfigError(BackchannelError):
    pass
