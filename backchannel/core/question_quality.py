"""Precision and recall of the question detector against hand labels (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backchannel.core.models import Message
from backchannel.core.questions import is_question


@dataclass(frozen=True, slots=True)
class Quality:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 1.0


def evaluate(messages: Iterable[Message], labelled: set[str]) -> Quality:
    tp = fp = fn = 0
    for m in messages:
        predicted, actual = is_question(m.text), m.network_id in labelled
        tp += predicted and actual
        fp += predicted and not actual
        fn += actual and not predicted
    return Quality(tp, fp, fn)
