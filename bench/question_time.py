"""Time of the question detector on adversarial texts of 100 KB, and of the backtracking
pattern it replaced on short ones (issue 10).

.venv/bin/python bench/question_time.py [--old]
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backchannel.core.questions import is_question  # noqa: E402

SIZE = 100_000
ADVERSARIAL = {
    "dots after a hashtag": "#slz " + "." * SIZE + "1",
    "chained mentions": "@" + "a@" * (SIZE // 2) + " 1",
    "RTs": "RT " * (SIZE // 3) + "1",
    "quote marks": "'" * SIZE + "1",
    "dotted hashtag": "#" + "a." * (SIZE // 2) + "1",
    "punctuation": "-–—:;,.>|\"'“”‘’()" * (SIZE // 17) + "1",
    "www": "www." * (SIZE // 4) + "?",
    "spaces": " " * SIZE + "1",
    "hashtags": "#a " * (SIZE // 3) + "1",
}
# The opening pattern before issue 10: `[...]+` nested in `(...)*`.
BACKTRACKING = re.compile(
    r"(?:\s|RT\b:?|[@#][\w.@-]+:?|[-–—:;,.>|\"'“”‘’()]+)*([A-Za-z']+)(?:[^A-Za-z']+([A-Za-z']+))?",
    re.IGNORECASE,
)


def best_of(runs: int, text: str) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        is_question(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    worst = ("", 0.0)
    for name, text in ADVERSARIAL.items():
        seconds = best_of(5, text)
        print(f"{name:22} {len(text):7,} characters  {seconds * 1000:7.2f} ms")
        worst = max(worst, (name, seconds), key=lambda w: w[1])
    print(f"worst: {worst[0]}, {worst[1] * 1000:.2f} ms")
    if "--old" in sys.argv:
        # Exponential: stop once one text takes 2 s; 100 KB would never finish.
        for dots in range(16, 40, 2):
            start = time.perf_counter()
            BACKTRACKING.match("#slz " + "." * dots + "1")
            seconds = time.perf_counter() - start
            print(f"backtracking pattern, '#slz ' + {dots} dots + '1': {seconds:.2f} s")
            if seconds > 2:
                break


if __name__ == "__main__":
    main()
