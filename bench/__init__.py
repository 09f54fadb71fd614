"""Switchboard's benchmark: Switchboard against two baselines on the same
workloads, in one invocation.

    .venv/bin/python -m bench            # the default set (W1a, W1b, W2, W3, W4), ~6 min
    .venv/bin/python -m bench --workloads w1a,w1b --w4   # a subset (--w4 adds W4 to it)
    .venv/bin/python -m bench --scale 0.02 --workloads w1a,w3   # a smoke run

Modules: ``runner`` (the command: servers, workloads, measurement, report),
``servers`` (Redis, the three designs, /proc readings), ``client`` (the load
generator process: many raw WebSocket connections on one asyncio loop),
``workloads`` (W1..W4), ``report`` (table, JSON, plot) and ``baselines``
(the floor and the naive design). See docs/performance.md.
"""
