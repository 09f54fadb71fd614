"""``python -m switchboard_webhooks``: validate the configuration, then run."""

from __future__ import annotations

import logging
import sys

from switchboard.config import SettingsError
from switchboard_webhooks.settings import Settings


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"switchboard-webhooks: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per POST otherwise
    from switchboard_webhooks.app import WebhookService
    from switchboard_webhooks.lifecycle import run

    return run(WebhookService(settings))


if __name__ == "__main__":
    sys.exit(main())
