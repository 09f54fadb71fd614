"""EVENTS_MAXLEN on the gateway: off by default, validated like the other
settings, and refused with the memory broker (which keeps no stream)."""

from __future__ import annotations

import pytest

from switchboard.backplane import scripts
from switchboard_gateway.settings import Settings, SettingsError

BASE = {"JWT_SECRET": "events-settings-secret-0123456789abcdef"}


def test_off_by_default() -> None:
    assert Settings.from_env(BASE).events_maxlen == 0


def test_parsed() -> None:
    assert Settings.from_env({**BASE, "EVENTS_MAXLEN": " 100000 "}).events_maxlen == 100000


@pytest.mark.parametrize("value", ["-1", "1.5", "many", ""])
def test_bad_value_names_its_variable(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**BASE, "EVENTS_MAXLEN": value})
    assert str(raised.value).startswith("EVENTS_MAXLEN=")


def test_the_memory_broker_writes_no_events() -> None:
    with pytest.raises(SettingsError, match="EVENTS_MAXLEN needs a redis://"):
        Settings.from_env({**BASE, "REDIS_URL": "memory://", "EVENTS_MAXLEN": "10"})
    assert Settings.from_env({**BASE, "REDIS_URL": "memory://", "EVENTS_MAXLEN": "0"}).memory_broker


def test_every_script_that_makes_an_event_shares_one_snippet() -> None:
    # The Lua of events.lua is prepended, not copied: one definition each.
    for script in (scripts.PUBLISH, scripts.PRESENCE_UPSERT, scripts.PRESENCE_REMOVE, scripts.PRESENCE_SWEEP,
                   scripts.PRESENCE_MEMBERS, scripts.APPEND_EVENT):
        assert script.source.startswith(scripts.EVENTS_PRELUDE)
        assert script.source.count("local function append_event(") == 1
