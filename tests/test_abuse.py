"""What an anonymous or hostile client can make the server do (issue 10, items 11, 14
and 16): numbers too large for the store, repeated ids, a wall snapshot over a
spammed event, too many websockets, and the headers every response carries.

The real app on a free port with the real store (`store` is conftest's: SQLite and
PostgreSQL), aiohttp and `websockets` clients.
"""

# The fixtures imported from test_server are requested by name, as parameters that
# shadow the imports: that is how pytest fixtures work, not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from test_server import (  # noqa: F401 - fixtures are used by name
    EVENT,
    NewModerator,
    Served,
    http,
    moderator,
    msg,
    serve,
    served,
)

from backchannel.core import wire

HUGE = str(2**64)


# -- 11. integers from clients -------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [HUGE, str(2**63), "9" * 5000, "-1", "1e3", " 1", "١٢"]
)  # the last is Arabic-Indic digits: decimal to Python, not to the store
def test_client_int_refuses_what_the_store_cannot_hold(value: str) -> None:
    with pytest.raises(wire.PayloadError):
        wire.client_int(value, "before")


def test_client_int_accepts_the_store_range() -> None:
    assert wire.client_int("0", "n") == 0
    assert wire.client_int(str(2**63 - 1), "n") == 2**63 - 1
    assert wire.client_int(2**63 - 1, "n") == 2**63 - 1
    for value in (2**63, -1, True, 1.0, None, [1]):
        with pytest.raises(wire.PayloadError):
            wire.client_int(value, "ids")


async def test_huge_integers_are_400_not_500(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    [mid] = await served.add([msg(1)])
    for query in (f"before={HUGE}", f"limit={HUGE}", f"before={2**63}"):
        async with alice.http.get(served.url(f"/api/events/{EVENT}/messages?{query}")) as resp:
            assert resp.status == 400, (query, await resp.text())
    headers = {"Origin": served.origin, "X-CSRF-Token": alice.csrf, "Content-Type": "application/json"}
    # Written by hand: orjson would not encode the last two.
    for ids in (f"[{2**64 - 1}]", f"[{mid}, {2**63}]", f"[{-(2**63) - 1}]", f"[{HUGE}0]"):
        body = f'{{"action": "hide", "ids": {ids}}}'
        url = served.url(f"/api/events/{EVENT}/moderate")
        async with alice.http.post(url, data=body, headers=headers) as resp:
            assert resp.status == 400, (ids, await resp.text())
    # Nothing was applied by the refused requests.
    async with alice.http.get(served.url(f"/api/events/{EVENT}/messages")) as resp:
        assert [i["status"] for i in (await resp.json())["items"]] == ["new"]
    async with alice.http.get(served.url(f"/ws/wall/{EVENT}?since={HUGE}")) as resp:
        assert resp.status == 400


async def test_repeated_ids_make_one_change_each(served: Served, moderator: NewModerator) -> None:
    alice = await moderator("alice")
    first, second = await served.add([msg(1), msg(2)])
    data = await alice.moderate("star", [first] * 250 + [second] * 250)
    assert [c["message"]["id"] for c in data["changes"]] == [first, second]
    status, _ = await alice.post(f"/api/events/{EVENT}/moderate", {"action": "star", "ids": [first] * 501})
    assert status == 400
