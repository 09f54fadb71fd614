"""``python -m switchboard_gateway``: validate the configuration, then serve."""

from __future__ import annotations

import logging
import sys

from switchboard_gateway.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"switchboard: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from switchboard_gateway.app import create_app
    from switchboard_gateway.lifecycle import run

    run(create_app(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
