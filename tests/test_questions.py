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
    messages = [message_from_record(json.loads(line)) for line in (root / "slz.jsonl").read_text().splitlines()]
    labelled = set(json.loads((root / "slz-questions.json").read_text())["questions"])
    quality = evaluate(messages, labelled)
    assert quality.recall == 1.0
    assert quality.precision >= 0.8
