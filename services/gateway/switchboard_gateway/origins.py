"""Browser origins, compared in one canonical form.

``ALLOWED_ORIGINS`` entries and the ``Origin`` header of an upgrade are both
reduced to ``scheme://host[:port]`` with the scheme and host lower-cased, the
default port (80 for http, 443 for https) dropped and no trailing slash, so
``HTTPS://Chat.Example:443/`` and ``https://chat.example`` are the same
origin and nothing else is.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str | None:
    """The canonical form of an origin, or None when `value` is not one
    (another scheme, a path, credentials, the opaque origin ``null``...)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased by urlsplit, IPv6 without brackets
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or parts.password is not None
    ):
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"
