"""The committed #slz replay archive: valid, chronological, faithful to its seed."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import UTC, date
from pathlib import Path
from types import ModuleType

import pytest

from backchannel.core.models import Message, Network
from backchannel.core.record import message_from_record, message_to_record
from backchannel.sources.archive import read_archive, sniff_format

REPO = Path(__file__).resolve().parent.parent
ARCHIVE = REPO / "replay_data" / "slz.jsonl"
BUILD_SCRIPT = REPO / "replay_data" / "build_slz.py"
SEED = REPO.parent / "shared" / "seeds" / "002_3dd51878027c9a10.txt"


def records() -> list[dict]:
    lines = ARCHIVE.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), "no blank lines"
    return [json.loads(line) for line in lines]


def messages() -> list[Message]:
    return [message_from_record(r) for r in records()]


def build_script() -> ModuleType:
    name = "replay_data_build_slz"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


def seed_items() -> list[tuple[int, str, str]]:
    """(number, header, text) per listed tweet, read simply and independently of the build script."""
    if not SEED.exists():
        pytest.skip(f"the seed is not here ({SEED}): ../shared is absent")
    lines = SEED.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "Here is part 1 of all the tweets:" in line)
    items: list[tuple[int, str, str]] = []
    pending: tuple[int, str] | None = None
    for line in lines[start + 1 :]:
        if "Responses shortly" in line:
            break
        if not line.strip():
            continue
        if pending is not None:
            items.append((*pending, line))
            pending = None
            continue
        found = re.match(r"\s*(\d+)\.\s(.*)", line)
        assert found, line
        head, _, rest = found.group(2).partition("\u00a0")
        if rest.strip():
            items.append((int(found.group(1)), head, rest))
        else:
            pending = (int(found.group(1)), head)
    # The blog renders spaces around tags and links as no-break spaces; the tweets had plain ones.
    return [(n, head, text.replace("\u00a0", " ").strip()) for n, head, text in items]


def test_58_valid_records_that_round_trip() -> None:
    recs = records()
    assert len(recs) == 58
    for record in recs:
        message = message_from_record(record)
        assert message_to_record(message) == record
        assert message.network is Network.X
        assert message.event == "slz"
        assert record["created_at"].endswith("Z")
        assert record["uri"] == f"https://x.com/i/status/{record['network_id']}"
        assert record["permalink"] == f"https://x.com/{record['author_handle']}/status/{record['network_id']}"
        assert record["repost_of"] is None and record["reply_to"] is None and record["raw"] is None
        assert "slz" in record["hashtags"]
        assert all(h == h.lower() and not h.startswith("#") for h in record["hashtags"])
        assert all(not m.startswith("@") for m in record["mentions"])
        assert all(link.startswith(("http://", "https://")) for link in record["links"])


def test_the_importer_reads_every_line() -> None:
    assert sniff_format(ARCHIVE) == "jsonl"
    items = list(read_archive(ARCHIVE, event="slz"))
    assert len(items) == 58
    assert all(isinstance(item, Message) for item in items)


def test_chronological_on_the_day_with_increasing_unique_ids() -> None:
    msgs = messages()
    times = [m.created_at for m in msgs]
    assert times == sorted(times)
    assert all(t.tzinfo == UTC and t.date() == date(2010, 6, 22) for t in times)
    # Within and just after the 13:00-14:00 BST (12:00-13:00 UTC) webinar.
    assert times[0].hour == 12 and times[-1].hour == 13 and times[-1].minute < 45
    ids = [int(m.network_id) for m in msgs]
    assert ids == sorted(ids) and len(set(ids)) == 58
    assert all(16_000_000_000 < i < 18_000_000_000 for i in ids)
    assert len({m.uri for m in msgs}) == 58
    assert len({m.permalink for m in msgs}) == 58


def test_first_and_last_are_the_seed_ends() -> None:
    msgs = messages()
    first, last = msgs[0], msgs[-1]
    assert first.text == "@IshmaelBurdeau #slz both - all need to take part."
    assert (first.author_name, first.author_handle) == ("Michelle Kaye", "MitshK")
    assert last.text.startswith("RT @felmundo: The heart")
    assert (last.author_name, last.author_handle) == ("Abi Signorelli", "abisignorelli")


@pytest.mark.parametrize(
    ("handle", "name"),
    [
        ("abisignorelli", "Abi Signorelli"),
        ("MitshK", "Michelle Kaye"),
        ("charlie_elise", "Charlie Elise Duff"),
        ("0neLife", "Julian Summerhayes"),
        ("jenniwheller", "jenniwheller"),
        ("callumsaunders", "Callum Saunders"),
        ("joningham", "Jon Ingham"),
        ("BillBoorman", "Bill Boorman"),
        ("KenMoir", "Ken Moir"),
    ],
)
def test_names_and_handles_are_split(handle: str, name: str) -> None:
    names = {m.author_name for m in messages() if m.author_handle == handle}
    assert names == {name}


def test_every_name_is_trimmed_and_plain() -> None:
    for m in messages():
        assert m.author_name == m.author_name.strip()
        assert m.author_handle and re.fullmatch(r"\w{1,15}", m.author_handle)
        assert "\uf8ff" not in m.author_name and "\u00a0" not in m.text


def test_run_together_artefacts_are_kept_in_text_and_read_in_entities() -> None:
    by_text = {m.text: m for m in messages()}
    abi = next(m for t, m in by_text.items() if t.startswith("RT @felmundo"))
    assert "http://bit.ly/cxUSkB#slz #ConnectingHR" in abi.text
    assert abi.links == ("http://bit.ly/cxUSkB",)
    assert abi.hashtags == ("slz", "connectinghr")
    jon = next(m for t, m in by_text.items() if "@BillBoorman@charlie_elise" in t)
    assert jon.mentions == ("gsiemens", "BillBoorman", "charlie_elise")
    share = next(m for t, m in by_text.items() if "@MitshKInteresting" in t)
    assert share.mentions == ("MitshK",)


def test_every_seed_tweet_is_in_the_archive_exactly() -> None:
    items = seed_items()
    assert [n for n, _, _ in items] == list(range(1, 59))
    msgs = messages()
    # Newest first in the seed, oldest first in the archive: item N is line 59 - N.
    for (number, head, text), message in zip(items, reversed(msgs), strict=True):
        assert message.text == text, number
        assert head.replace("\uf8ff", "").strip().endswith(message.author_handle), number
        assert head.strip().startswith(message.author_name), number


def test_the_build_script_reproduces_the_archive() -> None:
    if not SEED.exists():
        pytest.skip(f"the seed is not here ({SEED}): ../shared is absent")
    build = build_script()
    tweets = build.parse_seed(SEED.read_text(encoding="utf-8"))
    assert len(tweets) == 58
    assert build.render(build.build_records(tweets)) == ARCHIVE.read_text(encoding="utf-8")
