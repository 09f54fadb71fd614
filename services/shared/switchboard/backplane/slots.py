"""Redis Cluster hash slots, and one short hash tag per slot.

A key's slot is CRC16 (XMODEM) of its hash tag (the text between the first
``{`` and the next ``}``) modulo 16384. ``slot_tag(s)`` is a short
alphanumeric string whose slot is ``s``: putting ``{slot_tag(s)}`` in a key
places that key in slot ``s``, next to whatever else lives there. The events
streams use it to sit in the same slot as the rooms whose events they carry
(see ``switchboard.backplane.events``).

The table is part of the key layout: gateways and dispatchers of every
version must compute the same one, so the search below must never change
(a unit test pins it).
"""

from __future__ import annotations

import binascii
import itertools
import string
from functools import cache

SLOTS = 16384
_ALPHABET = string.digits + string.ascii_letters


def slot_of_tag(tag: str) -> int:
    """The slot of every key whose hash tag is `tag`."""
    return binascii.crc_hqx(tag.encode(), 0) % SLOTS


def key_slot(key: str) -> int:
    """The slot of `key`, hash-tag rule included (as Redis computes it)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return slot_of_tag(key[start + 1 : end])
    return slot_of_tag(key)


@cache
def _tags() -> tuple[str, ...]:
    # Shortest first, then in alphabet order: 1 to 3 characters cover every
    # slot (checked by the test); about 70 ms, once per process.
    found: list[str | None] = [None] * SLOTS
    missing = SLOTS
    for length in (1, 2, 3):
        for chars in itertools.product(_ALPHABET, repeat=length):
            tag = "".join(chars)
            slot = slot_of_tag(tag)
            if found[slot] is None:
                found[slot] = tag
                missing -= 1
        if missing == 0:
            break
    assert missing == 0, "three characters cover every slot"
    return tuple(t for t in found if t is not None)


def slot_tag(slot: int) -> str:
    """The precomputed hash tag of `slot`: ``slot_of_tag(slot_tag(s)) == s``."""
    if not 0 <= slot < SLOTS:
        raise ValueError(f"slot {slot} is not in 0..{SLOTS - 1}")
    return _tags()[slot]
