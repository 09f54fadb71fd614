"""Settings of the publish hook (docs/deploy.md "Publish hook, user control
and token refresh"): off by default, a URL and a secret when on, a bounded
timeout; every refusal names the variable and never prints a secret."""

from __future__ import annotations

import pytest

from switchboard_gateway.publish_hook import hook_from_settings
from switchboard_gateway.settings import Settings, SettingsError

JWT = "settings-test-secret-0123456789abcdef"
HOOK_SECRET = "hook-test-secret-0123456789abcdef-xyz"


def load(**env: str) -> Settings:
    return Settings.from_env({"JWT_SECRET": JWT, **env})


def test_the_hook_is_off_by_default() -> None:
    settings = load()
    assert settings.publish_hook_url is None and settings.hook_timeout_s == 2.0
    assert hook_from_settings(settings) is None
    assert load(PUBLISH_HOOK_URL="").publish_hook_url is None  # blank is unset


def test_a_hook_with_its_secret() -> None:
    settings = load(PUBLISH_HOOK_URL="https://app.example/hook", WEBHOOK_SECRET=HOOK_SECRET, HOOK_TIMEOUT="0.5")
    hook = hook_from_settings(settings)
    assert hook is not None and hook.url == "https://app.example/hook"
    assert settings.hook_timeout_s == 0.5


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PUBLISH_HOOK_URL": "app.example/hook", "WEBHOOK_SECRET": HOOK_SECRET}, "PUBLISH_HOOK_URL"),
        ({"PUBLISH_HOOK_URL": "https://app.example:70000/", "WEBHOOK_SECRET": HOOK_SECRET}, "PUBLISH_HOOK_URL"),
        ({"PUBLISH_HOOK_URL": "https://app.example/hook"}, "WEBHOOK_SECRET"),
        ({"PUBLISH_HOOK_URL": "https://app.example/hook", "WEBHOOK_SECRET": "short-secret"}, "WEBHOOK_SECRET"),
        ({"HOOK_TIMEOUT": "-1"}, "HOOK_TIMEOUT"),
        ({"HOOK_TIMEOUT": "31"}, "HOOK_TIMEOUT"),
        ({"HOOK_TIMEOUT": "nan"}, "HOOK_TIMEOUT"),
        ({"WEBHOOK_SECRET": "change-me-demo-webhook-secret-0123456789abcdef"}, "WEBHOOK_SECRET"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load(**env)
    assert variable in str(refused.value)
    assert "short-secret" not in str(refused.value)
