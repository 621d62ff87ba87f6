"""One exception tree for backchannel; library errors are translated at the boundary."""

from __future__ import annotations


class BackchannelError(Exception):
    """Base of every error backchannel raises on purpose."""


class StoreError(BackchannelError):
    pass


class PayloadError(BackchannelError):
    """An upstream record or archive line that cannot be understood."""


class ConfigError(BackchannelError):
    pass
