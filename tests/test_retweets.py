from __future__ import annotations

from backchannel.core.retweets import manual_retweet, quotes

ORIGINAL = "#slz Being social is not about tools - it's all about behaviours and human interaction"


def test_manual_retweet_with_comment_before_and_after() -> None:
    handle, quoted = manual_retweet(
        "Amen: RT @abisignorelli #slz Being social is not about tools - it's all about behaviours "
        "and human interaction#ConnectingHR"
    ) or ("", "")
    assert handle == "abisignorelli"
    assert quotes(quoted, ORIGINAL)
    _, quoted = manual_retweet(f"RT @abisignorelli: {ORIGINAL} >> totally agree with you :)") or ("", "")
    assert quotes(quoted, ORIGINAL)


def test_truncated_copy_still_matches() -> None:
    assert quotes("#slz Being social is not about to…", ORIGINAL)


def test_different_text_does_not_match() -> None:
    assert not quotes("#slz With more remote working AND gen y coming through", ORIGINAL)
    assert not quotes("#slz", "#slz")  # too short to tell apart


def test_plain_message_is_not_a_retweet() -> None:
    assert manual_retweet("Thanks for the RT earlier") is None
