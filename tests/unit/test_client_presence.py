"""The Python client's view of a room's presence (``RoomPresence``)."""

from __future__ import annotations

from switchboard.client import RoomPresence


def test_room_presence_folds_the_frames_of_its_room() -> None:
    def member(uid: str, connections: int = 1) -> dict[str, object]:
        return {"user": {"id": uid, "name": uid.upper()}, "connections": connections}

    view = RoomPresence("r")
    assert view.apply({"type": "joined", "room": "r", "presence": [member("me"), member("a", 2)], "presence_count": 250})
    assert view.count == 250 and set(view.members) == {"me", "a"} and view.partial
    assert view.apply({"type": "presence_count", "room": "r", "count": 251}) and view.count == 251
    assert not view.apply({"type": "presence_count", "room": "other", "count": 9}) and view.count == 251
    assert not view.apply({"type": "message", "room": "r", "offset": 1})
    assert view.apply({"type": "presence", "room": "r", "members": [member("b")], "count": 3})
    assert (view.count, set(view.members), view.partial) == (3, {"b"}, True)
    assert view.apply({"type": "presence_join", "room": "r", "user": {"id": "c", "name": "C"}, "count": 4})
    assert view.members["c"] == {"user": {"id": "c", "name": "C"}, "connections": 1} and view.count == 4
    assert view.apply({"type": "presence_leave", "room": "r", "user": {"id": "b", "name": "B"}, "count": 3})
    assert set(view.members) == {"c"} and view.count == 3
