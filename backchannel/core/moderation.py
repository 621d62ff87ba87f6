"""Moderation rules: what an action does to a message, and what the wall may show.

Pure functions over the message model. The store persists their results and the hub
applies `WallRules.visible` to live delivery and to resume alike, so the public wall
can never receive by one path what the other would withhold.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from backchannel.core.models import Message, Moderation, Status, StoredMessage


class Action(enum.StrEnum):
    APPROVE = "approve"
    HIDE = "hide"
    RESTORE = "restore"  # back to new: neither approved nor hidden
    STAR = "star"
    UNSTAR = "unstar"
    ANSWER = "answer"
    UNANSWER = "unanswer"
    PIN = "pin"
    UNPIN = "unpin"


class EventAction(enum.StrEnum):
    """Actions on the event rather than on one message."""

    BLOCK = "block"
    UNBLOCK = "unblock"
    MUTE = "mute"
    UNMUTE = "unmute"
    PREMODERATION_ON = "premoderation-on"
    PREMODERATION_OFF = "premoderation-off"


def apply(moderation: Moderation, action: Action) -> Moderation:
    match action:
        case Action.APPROVE:
            return replace(moderation, status=Status.APPROVED)
        case Action.HIDE:
            return replace(moderation, status=Status.HIDDEN, pinned=False)
        case Action.RESTORE:
            return replace(moderation, status=Status.NEW)
        case Action.STAR | Action.UNSTAR:
            return replace(moderation, starred=action is Action.STAR)
        case Action.ANSWER | Action.UNANSWER:
            return replace(moderation, answered=action is Action.ANSWER)
        case Action.PIN:
            # Pinning features a message on the wall, which only shows approved ones.
            return replace(moderation, pinned=True, status=Status.APPROVED)
        case Action.UNPIN:
            return replace(moderation, pinned=False)
    raise ValueError(action)  # pragma: no cover - exhaustive


def author_key(message: Message) -> tuple[str, str]:
    return (message.network.value, message.author_handle.lower())


def muted_by(message: Message, muted: tuple[str, ...]) -> str | None:
    """The first muted term the message contains (a `#tag` term matches hashtags)."""
    text = message.text.lower()
    tags = {t.lower() for t in message.hashtags}
    for term in muted:
        t = term.lower()
        if t.startswith("#") and t[1:] in tags:
            return term
        if t in text:
            return term
    return None


@dataclass(frozen=True, slots=True)
class WallRules:
    premoderation: bool = False
    blocked: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    muted: tuple[str, ...] = ()

    def visible(self, stored: StoredMessage) -> bool:
        """Whether the public wall may show this message."""
        status = stored.moderation.status
        if status is Status.HIDDEN or stored.deleted or stored.message.repost_of is not None:
            return False
        if self.premoderation and status is not Status.APPROVED:
            return False
        if author_key(stored.message) in self.blocked:
            return False
        return muted_by(stored.message, self.muted) is None
