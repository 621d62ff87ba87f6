"""Precision and recall of the question queue's detector on the #slz session.

.venv/bin/python bench/question_quality.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backchannel.core.question_quality import evaluate  # noqa: E402
from backchannel.core.record import message_from_record  # noqa: E402

messages = [
    message_from_record(json.loads(line))
    for line in (ROOT / "replay_data/slz.jsonl").read_text().splitlines()
]
labelled = set(json.loads((ROOT / "replay_data/slz-questions.json").read_text())["questions"])
q = evaluate(messages, labelled)
print(f"#slz: {len(messages)} messages, {len(labelled)} labelled questions")
print(
    f"detected {q.true_positives + q.false_positives}: {q.true_positives} right, {q.false_positives} wrong; missed {q.false_negatives}"
)
print(f"precision {q.precision:.2f}, recall {q.recall:.2f}")
