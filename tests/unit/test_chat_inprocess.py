"""Protocol §11 through the whole gateway in-process on the memory broker
(dev mode): the same frames as over Redis (tests/integration/test_chat_*.py
cover the rules on real gateways)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient, WebSocketTestSession

from switchboard.client import make_token
from switchboard_gateway.app import create_app
from switchboard_gateway.settings import Settings

SECRET = "inprocess-test-secret-0123456789abcdef"
API_KEY = "inprocess-api-key"


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings.from_env(
        {"REDIS_URL": "memory://", "JWT_SECRET": SECRET, "NODE_ID": "unit-node", "API_KEY": API_KEY}
    )
    with TestClient(create_app(settings)) as c:
        yield c


def request(ws: WebSocketTestSession, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a frame with an id and return the reply with that id."""
    ws.send_json({**frame, "id": "x"})
    while True:
        reply: dict[str, Any] = ws.receive_json()
        if reply.get("id") == "x":
            return reply


def test_changes_latest_view_and_read_state_on_the_memory_broker(client: TestClient) -> None:
    with client.websocket_connect(f"/ws?token={make_token(SECRET, 'alice')}") as alice, client.websocket_connect(
        f"/ws?token={make_token(SECRET, 'bob')}"
    ) as bob:
        alice.receive_json(), bob.receive_json()  # welcome
        assert request(alice, {"type": "join", "room": "r"})["unread"] == 0
        request(bob, {"type": "join", "room": "r"})
        target = request(alice, {"type": "publish", "room": "r", "text": "helo"})["offset"]
        assert request(alice, {"type": "edit", "room": "r", "target": target, "text": "hello"})["offset"] == 2
        assert request(bob, {"type": "edit", "room": "r", "target": target, "text": "x"})["code"] == "forbidden"
        assert request(bob, {"type": "react", "room": "r", "target": target, "emoji": "👍"})["offset"] == 3
        assert request(bob, {"type": "react", "room": "r", "target": target, "emoji": "👍"})["offset"] is None
        view = request(bob, {"type": "history", "room": "r", "view": "latest"})["messages"]
        assert view == [
            {
                "offset": 1,
                "user": {"id": "alice", "name": "alice"},
                "text": "hello",
                "ts": view[0]["ts"],
                "edited": True,
                "deleted": False,
                "reactions": {"👍": {"count": 1, "me": True}},
            }
        ]
        bob.send_json({"type": "read", "room": "r", "offset": 3})
        while (event := alice.receive_json())["type"] != "read":
            pass
        assert event == {"type": "read", "room": "r", "user": {"id": "bob", "name": "bob"}, "offset": 3}
        assert request(bob, {"type": "join", "room": "r"})["last_read"] == 3
        assert request(alice, {"type": "join", "room": "r"})["unread"] == 0  # only alice's own message
        deleted = client.delete("/api/rooms/r/messages/1", headers={"Authorization": f"Bearer {API_KEY}"})
        assert deleted.status_code == 200 and deleted.json()["offset"] == 4
        refused = client.delete("/api/rooms/r/messages/1", headers={"Authorization": f"Bearer {API_KEY}"})
        assert (refused.status_code, refused.json()["error"]) == (400, "bad_request")
        latest = client.get("/api/rooms/r/history?view=latest", headers={"Authorization": f"Bearer {API_KEY}"})
        assert latest.json()["messages"][0]["deleted"] is True
