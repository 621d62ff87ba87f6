from __future__ import annotations

import pytest

from backchannel.core.questions import first_word, is_question


@pytest.mark.parametrize(
    "text",
    [
        "Are chatrooms passe compare with newer social learning tools? #slz",
        "Will we lose skills required for face2face interaction (e.g. negotiation) with more 2.0 tools #slz",
        "#slz how do you encourage employees to engage with social learning if they're cynical",
        "@joningham @kenmoir is there a case study",
        "RT @abi: anyone have any experience of Lotus Quickr",
        "#slz: What counts as learning",
    ],
)
def test_questions(text: str) -> None:
    assert is_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "Thanks to @joningham - I enjoyed the conversation and all the tweets #slz",
        "Further links. #slz http://twitpic.com/1yyx2y?size=large",
        "@IshmaelBurdeau #slz both - all need to take part.",
        "Howdy all, joining late #slz",
        "",
    ],
)
def test_not_questions(text: str) -> None:
    assert not is_question(text)


def test_first_word_skips_mentions_hashtags_and_rt() -> None:
    assert first_word("RT @a: #slz @b -- Is it?") == "is"
    assert first_word("@@@") == ""


def test_statements_opening_with_an_auxiliary_are_not_questions() -> None:
    assert not is_question("Will be following up the #slz conversation at Training Zone")
    assert not is_question("Haven't seen that one .. RT @BillBoorman: look at Tribepad #slz")
    assert not is_question("Do check out the slides #slz")


def test_detector_quality_on_the_labelled_slz_session() -> None:
    import json
    from pathlib import Path

    from backchannel.core.question_quality import evaluate
    from backchannel.core.record import message_from_record

    root = Path(__file__).resolve().parent.parent / "replay_data"
    messages = [
        message_from_record(json.loads(line)) for line in (root / "slz.jsonl").read_text().splitlines()
    ]
    labelled = set(json.loads((root / "slz-questions.json").read_text())["questions"])
    quality = evaluate(messages, labelled)
    assert quality.recall == 1.0
    assert quality.precision >= 0.8


# Texts built to make a backtracking regex try every way of splitting a run: dots after a
# hashtag (the case that stopped a server: 4 s at 31 characters), chained mentions, "RT"s,
# quote marks, punctuation, URL look-alikes, each ending where no word can follow.
ADVERSARIAL = {
    "dots after a hashtag": lambda n: "#slz " + "." * n + "1",
    "chained mentions": lambda n: "@" + "a@" * (n // 2) + " 1",
    "RTs": lambda n: "RT " * (n // 3) + "1",
    "quote marks": lambda n: "'" * n + "1",
    "dotted hashtag": lambda n: "#" + "a." * (n // 2) + "1",
    "punctuation": lambda n: "-–—:;,.>|\"'“”‘’()" * (n // 17) + "1",
    "www": lambda n: "www." * (n // 4) + "?",
    "spaces": lambda n: " " * n + "1",
    "hashtags": lambda n: "#a " * (n // 3) + "1",
}
# Measured at 8 ms for the slowest 100 KB input on a loaded 2-core machine; a detector
# that backtracks takes longer than this on 30 characters.
BOUND_SECONDS = 0.5

_TIMER = """
import sys, time
from backchannel.core.questions import is_question
for line in sys.stdin:
    text = line.rstrip("\\n").encode().decode("unicode_escape")
    start = time.perf_counter()
    is_question(text)
    print(time.perf_counter() - start, flush=True)
"""


def test_detector_time_is_linear_on_adversarial_texts_of_10_to_100_kb() -> None:
    import subprocess
    import sys

    texts = [
        (f"{name}, {size // 1000} KB", make(size))
        for name, make in ADVERSARIAL.items()
        for size in (10_000, 100_000)
    ]
    # In a child process, so a detector that backtracks fails the test instead of hanging it.
    stdin = "".join(text.encode("unicode_escape").decode() + "\n" for _, text in texts)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _TIMER],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the detector did not finish the adversarial texts in 60 s")
    times = [float(line) for line in done.stdout.split()]
    assert len(times) == len(texts)
    slow = [
        f"{name}: {seconds:.2f} s"
        for (name, _), seconds in zip(texts, times, strict=True)
        if seconds > BOUND_SECONDS
    ]
    assert not slow
