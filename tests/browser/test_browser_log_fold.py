"""The client's log folding (store.js, protocol §11), run in the system
Chromium on the real module as served: edits, deletions and reactions fold
onto the message they target, in offset order, whatever order the entries
arrived in, and a change to a message that is not loaded changes nothing
until it is. No server frames are involved: the gateway only serves the file."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser

from .pages import new_tab

pytestmark = pytest.mark.browser

ALICE = {"id": "guest:alice-1", "name": "Alice"}
BOB = {"id": "guest:bob-2", "name": "Bob"}


def entry(offset: int, kind: str = "message", user: dict[str, str] = ALICE, **fields: Any) -> dict[str, Any]:
    frame = {"type": "message", "room": "lobby", "offset": offset, "epoch": "e1", "msg_id": f"m{offset}",
             "user": user, "text": "", "ts": 1_700_000_000_000 + offset, "kind": kind}
    frame.update(fields)
    return frame


LOG = [
    entry(1, text="hello"),
    entry(2, user=BOB, text="hi"),
    entry(3, "edit", target=1, text="hello, world"),
    entry(4, "react", user=BOB, target=1, emoji="👍"),
    entry(5, "react", target=1, emoji="👍"),
    entry(6, "react", target=1, emoji="🎉"),
    entry(7, "unreact", user=BOB, target=1, emoji="👍"),
    entry(8, "react", target=2, emoji="❤️"),
    entry(9, "delete", user=BOB, target=2),
    entry(10, "edit", user=BOB, target=2, text="too late"),  # the server refuses this; a log can't hold it
    entry(11, "react", target=99, emoji="👀"),  # its message is not loaded
]

# What the two messages look like once the log is folded.
FOLDED = [
    {"offset": 1, "text": "hello, world", "edited": True, "deleted": False,
     "reactions": [["👍", ["guest:alice-1"]], ["🎉", ["guest:alice-1"]]]},
    {"offset": 2, "text": "", "edited": False, "deleted": True, "reactions": []},
]

FOLD = """
async (entries) => {
  const store = await import("/static/store.js");
  const shape = (m) => ({
    offset: m.offset, text: m.text, edited: m.edited, deleted: m.deleted,
    reactions: [...m.reactions].map(([emoji, users]) => [emoji, users.map((u) => u.id)]),
  });
  // 1. The pure fold of the whole log.
  const folded = [...store.foldLog(entries.map((e) => store.entryFrom(e))).values()].map(shape);
  // 2. The same entries fed one by one in a shuffled order (pages loaded
  //    out of order), through Store.insertEntry, with duplicates.
  const s = new store.Store();
  const room = s.addRoom("lobby");
  const order = [...entries].reverse().concat(entries.slice(0, 3));
  const inserted = order.map((e) => s.insertEntry(room, e) !== null);
  const shuffled = room.messages.map(shape);
  // 3. Live, in order: each change replaces only its target.
  const live = new store.Store();
  const liveRoom = live.addRoom("lobby");
  const seen = entries.map((e) => {
    const r = live.insertEntry(liveRoom, e);
    return r && { kind: r.entry.kind, target: r.msg ? r.msg.offset : null, refolded: r.refolded };
  });
  // The fold never mutates a message it was given.
  const before = store.messageOf(store.entryFrom(entries[0]));
  const after = store.applyChange(before, store.entryFrom(entries[2]));
  return {
    folded, shuffled, inserted, live: liveRoom.messages.map(shape), seen,
    pure: before.text === "hello" && !before.edited && after.text === "hello, world",
    lastOffset: room.lastOffset,
    direct: [store.directRoomName("guest:bob-2", "guest:alice-1"), store.isRoomName("dm:a+b"),
             store.isRoomName("dm:a+b+c"), store.directPeerId("dm:a+b", new Set(["b"]))],
  };
}
"""


async def test_edits_deletions_and_reactions_fold_onto_their_messages(browser: Browser, start_gateway) -> None:
    gateway = start_gateway(NODE_ID="gw-fold")
    tab = await new_tab(browser)
    try:
        await tab.page.goto(gateway.http_url)
        result = await tab.page.evaluate(FOLD, LOG)
        assert result["folded"] == FOLDED
        assert result["shuffled"] == FOLDED
        assert result["live"] == FOLDED
        assert result["inserted"] == [True] * len(LOG) + [False] * 3  # each entry once
        assert result["lastOffset"] == 11
        assert result["seen"][2] == {"kind": "edit", "target": 1, "refolded": False}
        assert result["seen"][10] == {"kind": "react", "target": None, "refolded": False}
        assert result["pure"]
        assert result["direct"] == ["dm:guest:alice-1+guest:bob-2", True, False, "a"]
        assert tab.errors == []
    finally:
        await tab.context.close()
