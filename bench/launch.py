"""Start a server module on a chosen event loop, so that every design in a
bench run uses the same one.

    python -m bench.launch --loop uvloop  switchboard_gateway
    python -m bench.launch --loop asyncio bench.baselines.floor --port 9001 --redis redis://...

- ``uvloop``: uvloop's policy is installed before the module runs, so
  ``asyncio.run`` (the floor) gets a uvloop loop; uvicorn (``loop="auto"``,
  the naive design and the gateway) picks uvloop by itself.
- ``asyncio``: ``import uvloop`` is made to fail, so uvicorn's ``auto`` falls
  back to the stdlib loop and nothing else can install uvloop.

No change to the module under test is needed: this works for the gateway of
another checkout too (``--switchboard-src``). The runner checks which loop a
process really uses (``uses_uvloop``: is uvloop's extension mapped into it).
"""

from __future__ import annotations

import asyncio
import importlib.util
import runpy
import sys

LOOPS = ("uvloop", "asyncio")
ORIGIN_TAG = "bench.launch: running"


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--loop" or argv[1] not in LOOPS:
        sys.exit(f"usage: python -m bench.launch --loop {{{','.join(LOOPS)}}} MODULE [ARGS...]")
    loop, module, rest = argv[1], argv[2], argv[3:]
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    else:
        sys.modules["uvloop"] = None  # type: ignore[assignment]  # `import uvloop` raises ImportError
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    # The runner reads this line to record (and check) which code it measures.
    print(f"{ORIGIN_TAG} {origin}", file=sys.stderr, flush=True)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def origin_in(log: str) -> str | None:
    """The module file a launched process runs, from its log."""
    for line in log.splitlines():
        if line.startswith(ORIGIN_TAG + " "):
            return line[len(ORIGIN_TAG) + 1:]
    return None


def uses_uvloop(pid: int) -> bool:
    """Whether uvloop's compiled loop is loaded in process `pid` (Linux)."""
    with open(f"/proc/{pid}/maps") as f:
        return any("uvloop/loop." in line for line in f)


if __name__ == "__main__":
    main(sys.argv[1:])
