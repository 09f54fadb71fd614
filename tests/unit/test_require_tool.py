"""``require_tool`` (tests/conftest.py): a missing tool skips a test outside
CI, fails it with ``CI=true``, and fails it everywhere when the tier must not
skip (Redis)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RequireTool = Callable[..., str]
MISSING = "switchboard-no-such-tool"


@pytest.fixture
def outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture
def in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")


def executable(path: Path) -> str:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_found_on_path_returns_its_path(require_tool: RequireTool, in_ci: None) -> None:
    python = os.path.basename(sys.executable)
    found = require_tool(python, "a test", candidates=())
    assert os.access(found, os.X_OK) and os.path.basename(found) == python


def test_missing_outside_ci_skips_with_the_reason(require_tool: RequireTool, outside_ci: None) -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_tool(MISSING, "the widget tier needs it")
    message = str(skipped.value)
    assert MISSING in message and "not found" in message and "the widget tier needs it" in message
    assert "CI=true" in message  # says it would fail in CI


def test_missing_in_ci_fails(require_tool: RequireTool, in_ci: None) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        require_tool(MISSING, "the widget tier needs it")
    message = str(failed.value)
    assert MISSING in message and "the widget tier needs it" in message and "CI=true" in message


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_ci_values_that_mean_ci(require_tool: RequireTool, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception):
        require_tool(MISSING, "a test")


@pytest.mark.parametrize("value", ["", "false", "0", "no"])
def test_ci_values_that_do_not(require_tool: RequireTool, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception):
        require_tool(MISSING, "a test")


def test_a_tier_that_never_skips_fails_outside_ci_too(require_tool: RequireTool, outside_ci: None) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        require_tool(MISSING, "Redis-backed tests never skip", can_skip=False)
    assert "Redis-backed tests never skip" in str(failed.value)


def test_candidates_come_before_path(require_tool: RequireTool, tmp_path: Path, in_ci: None) -> None:
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    mine = executable(tmp_path / "python3")
    found = require_tool("python3", "a test", candidates=[str(tmp_path / "absent"), str(not_executable), mine])
    assert found == mine


def test_missing_candidates_are_named(require_tool: RequireTool, tmp_path: Path, outside_ci: None) -> None:
    absent = str(tmp_path / "absent")
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_tool(MISSING, "a test", candidates=[absent])
    assert absent in str(skipped.value)


def test_a_probe_problem_counts_as_missing(require_tool: RequireTool, tmp_path: Path, in_ci: None) -> None:
    tool = executable(tmp_path / "dockerish")
    seen: list[str] = []

    def probe(path: str) -> str | None:
        seen.append(path)
        return "'dockerish info' failed: no engine"

    with pytest.raises(pytest.fail.Exception) as failed:
        require_tool("dockerish", "the compose tier", candidates=[tool], probe=probe)
    assert seen == [tool]
    assert "no engine" in str(failed.value) and "the compose tier" in str(failed.value)


def test_a_probe_that_passes_returns_the_path(require_tool: RequireTool, tmp_path: Path, in_ci: None) -> None:
    tool = executable(tmp_path / "dockerish")
    assert require_tool("dockerish", "a test", candidates=[tool], probe=lambda path: None) == tool
