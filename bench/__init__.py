"""Switchboard's benchmark: Switchboard against two baselines on the same
workloads, in one invocation, on one event loop, interleaved and repeated.

    .venv/bin/python -m bench                       # every workload, 3 rounds + a warm-up
    .venv/bin/python -m bench --workloads w1a,w1b   # a subset
    .venv/bin/python -m bench --scale 0.02 --reps 1 --warmup 0 --workloads w1a,w3   # a smoke run
    .venv/bin/python -m bench --switchboard-src ../switchboard-before   # the gateway of another checkout

Modules: ``runner`` (the command: rounds, measurement), ``servers`` (Redis,
the designs, /proc readings), ``launch`` (starts a server on the chosen event
loop), ``client`` (the load generator process: many raw WebSocket
connections on one loop), ``workloads`` (W1a..W4, ROOM5K, JOIN10, JOIN10K,
BIG20K), ``report`` (summary, ratios, tables, plot) and ``baselines`` (the
floor and the naive design). See docs/performance.md.
"""
