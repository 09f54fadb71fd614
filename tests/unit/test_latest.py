"""The latest view of history (switchboard/latest.py): folding log entries
into messages with their edits, deletions and reactions applied."""

from __future__ import annotations

from switchboard import latest
from switchboard.protocol import codec
from switchboard.protocol.frames import EntryKind, LatestMessage, MessageBody, ReactionCount, User

ALICE, BOB, CAROL = User("alice", "Alice"), User("bob", "Bob"), User("carol", "Carol")


class Log:
    """A room's log as the backplane stores it (encoded message frames)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def add(
        self, kind: EntryKind, user: User, target: int | None = None, text: str = "", emoji: str | None = None
    ) -> int:
        offset = len(self.frames) + 1
        body = MessageBody(user=user, text=text, ts=1000 + offset, kind=kind, target=target, emoji=emoji)
        self.frames.append(codec.message_frame("r", offset, "ep", body))
        return offset

    def fold(self, viewer: str | None = "alice", start: int = 1) -> list[LatestMessage]:
        return latest.fold(latest.decode(self.frames[start - 1 :]), viewer)


def test_plain_messages_fold_to_themselves() -> None:
    log = Log()
    log.add("message", ALICE, text="one")
    log.add("message", BOB, text="two")
    assert log.fold() == [
        LatestMessage(1, ALICE, "one", 1001, edited=False, deleted=False, reactions={}),
        LatestMessage(2, BOB, "two", 1002, edited=False, deleted=False, reactions={}),
    ]


def test_the_last_edit_wins_and_keeps_the_first_time() -> None:
    log = Log()
    first = log.add("message", ALICE, text="helo")
    log.add("edit", ALICE, first, "hello")
    log.add("edit", ALICE, first, "hello!")
    (only,) = log.fold()
    assert (only.text, only.edited, only.ts) == ("hello!", True, 1001)


def test_a_deleted_message_keeps_its_place_without_text_or_reactions() -> None:
    log = Log()
    target = log.add("message", ALICE, text="oops")
    log.add("react", BOB, target, emoji="👍")
    log.add("delete", ALICE, target)
    log.add("edit", ALICE, target, "too late")  # the backplane refuses these; the fold ignores them anyway
    log.add("react", BOB, target, emoji="🎉")
    (only,) = log.fold()
    assert (only.offset, only.user, only.text, only.deleted, only.edited, only.reactions) == (
        target, ALICE, "", True, False, {}
    )


def test_reactions_count_users_and_say_me() -> None:
    log = Log()
    target = log.add("message", CAROL, text="vote")
    log.add("react", ALICE, target, emoji="👍")
    log.add("react", BOB, target, emoji="👍")
    log.add("react", BOB, target, emoji="🎉")
    log.add("react", CAROL, target, emoji="👀")
    log.add("unreact", CAROL, target, emoji="👀")  # back to none: the emoji disappears
    log.add("unreact", BOB, target, emoji="👍")
    (mine,) = log.fold("alice")
    assert mine.reactions == {"👍": ReactionCount(1, True), "🎉": ReactionCount(1, False)}
    assert list(mine.reactions) == ["👍", "🎉"]  # in the order they were first given
    (theirs,) = log.fold("bob")
    assert theirs.reactions == {"👍": ReactionCount(1, False), "🎉": ReactionCount(1, True)}
    (nobody,) = log.fold(None)
    assert not any(r.me for r in nobody.reactions.values())


def test_changes_to_messages_outside_the_entries_are_ignored() -> None:
    log = Log()
    old = log.add("message", ALICE, text="old")
    log.add("message", BOB, text="new")
    log.add("edit", ALICE, old, "edited old")
    log.add("react", BOB, old, emoji="👍")
    assert [m.offset for m in log.fold(start=2)] == [2]
    assert log.fold(start=2)[0].reactions == {}


def test_page_counts_messages_below_before() -> None:
    log = Log()
    for n in range(6):
        offset = log.add("message", ALICE, text=f"m{n}")
        log.add("react", BOB, offset, emoji="👍")
    entries = latest.decode(log.frames)
    assert latest.messages_below(entries, None) == 6
    assert latest.messages_below(entries, 5) == 2  # messages 1 and 3 (5 is not below 5)
    folded = latest.fold(entries, "bob")
    assert [m.offset for m in latest.page(folded, None, 2)] == [9, 11]
    assert [m.offset for m in latest.page(folded, 9, 2)] == [5, 7]
    assert all(m.reactions == {"👍": ReactionCount(1, True)} for m in folded)
    assert latest.page(folded, 1, 10) == []


def test_entries_logged_before_kinds_existed_are_messages() -> None:
    legacy = b'{"type":"message","room":"r","offset":1,"epoch":"e","msg_id":"e-1","user":{"id":"a","name":"A"},"text":"hi","ts":5}'
    (only,) = latest.fold(latest.decode([legacy]), None)
    assert (only.offset, only.text, only.edited) == (1, "hi", False)
