"""Guest sign-in: who may be a guest under which name, and the token.

Guests pick their own display name, so the name is checked against
impersonation: it is NFKC-normalised, may not contain invisible or
direction-changing characters, may not mix scripts (``аdmin`` with a
Cyrillic ``а``), and its *skeleton* -- case-folded, accents and separators
dropped, look-alike characters (``0``/``o``, ``1``/``l``, ``rn``/``m``,
Cyrillic and Greek letters that look Latin) mapped to one -- may not be that
of a reserved name (``system``, ``admin``, ... and GUEST_RESERVED_NAMES).

A guest's id is ``guest:<name as ASCII>-<64 random bits>`` (collisions are
not a concern below billions of guests), and the token's ``rooms`` claim is
GUEST_ROOMS, so room globs protect rooms from guests too.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata

import jwt

from switchboard_gateway.auth import Principal

NAME_MAX_CHARS = 32
GUEST_ID_PREFIX = "guest:"
_NAME = re.compile(r"^[\w .'-]{1,32}\Z")

# Matched as whole skeletons; the long ones (>= 5 letters) also inside a name
# ("the admin", "Moderator Bob").
RESERVED_NAMES = (
    "system", "admin", "administrator", "moderator", "mod", "root", "support", "staff",
    "owner", "official", "security", "switchboard", "server", "bot", "guest", "everyone",
    "here", "null", "undefined", "operator", "sysop", "webmaster", "noreply", "help",
)  # fmt: skip

# One representative per look-alike class (after case folding and accents).
_HOMOGLYPHS = str.maketrans(
    {
        "0": "o", "1": "l", "i": "l", "|": "l", "!": "l", "3": "e", "4": "a", "5": "s",
        "7": "t", "8": "b", "9": "g", "@": "a", "$": "s",
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
        "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "l", "ї": "l", "ј": "j", "ԁ": "d",
        "ӏ": "l", "ԛ": "q", "ԝ": "w", "ь": "b", "г": "r", "п": "n",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "l", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "γ": "y", "μ": "u", "ω": "w",
    }
)  # fmt: skip
_SEPARATORS = re.compile(r"[\s._'-]+")


class GuestNameError(ValueError):
    """The name cannot be a guest's; the message says why (shown to the user)."""


def skeleton(name: str) -> str:
    """What a name looks like, for comparing look-alikes."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    visible = "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Me", "Cf"))
    folded = _SEPARATORS.sub("", visible.translate(_HOMOGLYPHS))
    return folded.replace("rn", "m").replace("vv", "w").replace("cl", "d")


def _script(ch: str) -> str | None:
    """The script of a letter (the first word of its Unicode name), None for
    anything else. Japanese and Korean mix scripts legitimately."""
    if not ch.isalpha():
        return None
    word = unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
    return {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "IDEOGRAPHIC": "CJK"}.get(word, word)


class GuestPolicy:
    def __init__(
        self,
        secret: str,
        ttl_s: float,
        rooms: tuple[str, ...],
        reserved: tuple[str, ...] = (),
    ) -> None:
        self.secret = secret
        self.ttl_s = ttl_s
        self.rooms = rooms
        self._exact = {skeleton(n) for n in (*RESERVED_NAMES, *reserved)} - {""}
        self._inside = {s for s in self._exact if len(s) >= 5}

    def check_name(self, raw: object) -> str:
        """The name a guest will carry, or GuestNameError."""
        if not isinstance(raw, str):
            raise GuestNameError("name must be a string")
        name = unicodedata.normalize("NFKC", raw).strip()
        if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp") for ch in name):
            raise GuestNameError("name contains invisible or control characters")
        if not _NAME.match(name):
            raise GuestNameError(f"name: 1-{NAME_MAX_CHARS} letters, digits, spaces, . ' _ -")
        if len({s for s in map(_script, name) if s is not None}) > 1:
            raise GuestNameError("name mixes scripts (e.g. Latin with Cyrillic)")
        look = skeleton(name)
        if look in self._exact or any(reserved in look for reserved in self._inside):
            raise GuestNameError("that name is reserved")
        return name

    def mint(self, name: str, now: float | None = None) -> tuple[str, Principal]:
        """A token for a guest called `name` (already checked)."""
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_name).strip("_")[:24] or "guest"
        user_id = f"{GUEST_ID_PREFIX}{slug}-{secrets.token_hex(8)}"
        expires_at = int((time.time() if now is None else now) + self.ttl_s)
        claims = {"sub": user_id, "name": name, "exp": expires_at, "rooms": list(self.rooms)}
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return token, Principal(user_id, name, self.rooms, float(expires_at))

    def renew(self, principal: Principal, now: float | None = None) -> tuple[str, Principal]:
        """A fresh token for a guest who still holds a valid one (checked by
        the caller): same id and name, so a connection can ``refresh`` to it."""
        if not principal.user_id.startswith(GUEST_ID_PREFIX):
            raise GuestNameError("only guest tokens are renewed here")
        expires_at = int((time.time() if now is None else now) + self.ttl_s)
        claims = {"sub": principal.user_id, "name": principal.name, "exp": expires_at, "rooms": list(self.rooms)}
        token = jwt.encode(claims, self.secret, algorithm="HS256")
        return token, Principal(principal.user_id, principal.name, self.rooms, float(expires_at))
