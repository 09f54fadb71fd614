"""A local Redis Cluster of real ``redis-server --cluster-enabled yes``
processes on loopback (3 primaries + 3 replicas by default), created with
``redis-cli --cluster create``, with the faults the tests inject: kill -9 of
a primary (its replica is promoted), a slot migrated to another primary, a
replica cut off from its primary (so a failover loses writes).

Every wait has a deadline and polls the nodes' own view (``CLUSTER INFO``,
``CLUSTER SLOTS``); nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from switchboard_harness import free_port

SLOTS = 16384


def _wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (redis.RedisError, OSError) as exc:
            last = exc
        else:
            if last and not isinstance(last, Exception):
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")
        time.sleep(interval)


@dataclass
class ClusterNode:
    port: int
    bus_port: int
    dir: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisClusterProcess:
    """``start()`` → a cluster with every slot covered and ``cluster_state:ok``
    on every node. ``url`` lists every primary as a seed (comma-separated, the
    gateways' ``REDIS_URL`` format).

    Configuration chosen for tests (and documented for operators in
    docs/deploy.md): ``cluster-require-full-coverage no`` so a shard failing
    over does not stop the others; ``cluster-replica-validity-factor 0`` so a
    replica is always eligible for promotion; a 2 s node timeout so a
    failover takes ~3 s."""

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        password: str | None = None,
        node_timeout_ms: int = 2000,
    ) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed (apt-get install redis-server)")
        self.primaries_wanted = primaries
        self.replicas_wanted = replicas
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.dir = tempfile.mkdtemp(prefix="switchboard-cluster-")
        self.nodes: list[ClusterNode] = []
        self._served_before_kill: dict[int, list[tuple[int, int]]] = {}
        for index in range(primaries * (1 + replicas)):
            node_dir = os.path.join(self.dir, f"node{index}")
            os.makedirs(node_dir)
            self.nodes.append(ClusterNode(free_port(), free_port(), node_dir))

    # --- addresses ----------------------------------------------------------------

    def node_url(self, port: int) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{port}"

    @property
    def url(self) -> str:
        """Every current primary as a seed, comma-separated."""
        return ",".join(self.node_url(port) for port in self.primary_ports())

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=port, password=self.password, socket_timeout=5, socket_connect_timeout=2
        )

    def command(self, port: int, *args: Any) -> Any:
        """One command on one node (decoded as redis-py does)."""
        with self.client(port) as r:
            return r.execute_command(*args)

    # --- lifecycle ------------------------------------------------------------------

    def _wait_started(self, node: ClusterNode, tries: int = 3) -> None:
        """Wait for a node to answer. A port probed free can be taken before
        redis-server binds it (another process's ephemeral port): a node that
        exited is started again on fresh ports."""
        for attempt in range(tries):
            try:
                _wait(lambda: self.command(node.port, "PING"), 10, f"redis node {node.port}")
                return
            except TimeoutError:
                if node.proc is None or node.proc.poll() is None or attempt == tries - 1:
                    raise
                node.port, node.bus_port = free_port(), free_port()
                self._spawn(node)

    def start(self, timeout: float = 60.0) -> RedisClusterProcess:
        try:
            for node in self.nodes:
                self._spawn(node)
            for node in self.nodes:
                self._wait_started(node)
            if self.primaries_wanted >= 3:
                self._create_with_redis_cli(timeout)
            else:
                self._create_by_hand(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _create_with_redis_cli(self, timeout: float) -> None:
        argv = ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
                "--cluster-replicas", str(self.replicas_wanted), "--cluster-yes"]
        env = {**os.environ}
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        created = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")

    def _create_by_hand(self, timeout: float) -> None:
        """Fewer than 3 primaries (redis-cli refuses them; the benchmark
        compares 1 with 3): slots split evenly, every node met, replicas
        attached to the primaries in turn."""
        primaries = self.nodes[: self.primaries_wanted]
        share = SLOTS // len(primaries)
        for index, node in enumerate(primaries):
            first = index * share
            last = SLOTS - 1 if index == len(primaries) - 1 else first + share - 1
            self.command(node.port, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for node in self.nodes[1:]:
            self.command(node.port, "CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port, self.nodes[0].bus_port)

        def all_met() -> bool:
            return all(len(self._nodes_lines(n.port)) == len(self.nodes) for n in self.nodes)

        _wait(all_met, timeout, "every node met every other")
        for index, node in enumerate(self.nodes[len(primaries) :]):
            self.command(node.port, "CLUSTER", "REPLICATE", self.node_id(primaries[index % len(primaries)].port))

    def pids(self) -> dict[int, int]:
        """port -> pid of every running node (CPU accounting in the benchmark)."""
        return {n.port: n.proc.pid for n in self.nodes if n.proc is not None and n.alive}

    def _spawn(self, node: ClusterNode) -> None:
        argv = [
            "redis-server", "--port", str(node.port), "--bind", "127.0.0.1", "--protected-mode", "no",
            "--dir", node.dir, "--save", "", "--appendonly", "no",
            # replicas sync at once (the default waits 5 s for more replicas)
            "--repl-diskless-sync-delay", "0",
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(node.bus_port),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0",
            "--cluster-allow-replica-migration", "no",
        ]
        if self.password:
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        log = open(os.path.join(node.dir, "redis.log"), "ab")
        node.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def cleanup(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                if node.proc.poll() is None:
                    node.proc.kill()
                node.proc.wait(10)
                node.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- topology -------------------------------------------------------------------

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive]

    def slot_owners(self, port: int | None = None) -> dict[int, int]:
        """slot range start -> primary port, as one node (default: any live one) sees it."""
        port = port or self.live_nodes()[0].port
        owners = {}
        for entry in self.command(port, "CLUSTER", "SLOTS"):
            start, _end, primary = entry[0], entry[1], entry[2]
            owners[int(start)] = int(primary[1])
        return owners

    def slots_of(self, port: int) -> list[tuple[int, int]]:
        view = self.live_nodes()[0].port
        return [(int(e[0]), int(e[1])) for e in self.command(view, "CLUSTER", "SLOTS") if int(e[2][1]) == port]

    def owner_of_slot(self, slot: int, view: int | None = None) -> int:
        view = view or self.live_nodes()[0].port
        for entry in self.command(view, "CLUSTER", "SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                return int(entry[2][1])
        raise LookupError(f"slot {slot} is not served")

    def owner_of_key(self, key: str) -> int:
        slot = int(self.command(self.live_nodes()[0].port, "CLUSTER", "KEYSLOT", key))
        return self.owner_of_slot(slot)

    def primary_ports(self) -> list[int]:
        seen: list[int] = []
        for node in self.live_nodes():
            try:
                role = self.command(node.port, "ROLE")[0]
            except (redis.RedisError, OSError):
                continue
            if role in (b"master", "master"):
                seen.append(node.port)
        return seen

    def replica_of(self, primary_port: int) -> int:
        node_id = self.node_id(primary_port)
        for node in self.live_nodes():
            if node.port == primary_port:
                continue
            info = self.command(node.port, "CLUSTER", "MYID")
            own = info.decode() if isinstance(info, bytes) else info
            for line in self._nodes_lines(node.port):
                fields = line.split()
                if fields[0] == own and "slave" in fields[2] and fields[3] == node_id:
                    return node.port
        raise LookupError(f"no live replica of {primary_port}")

    def node_id(self, port: int) -> str:
        raw = self.command(port, "CLUSTER", "MYID")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def _nodes_lines(self, port: int) -> list[str]:
        raw = self.command(port, "CLUSTER", "NODES")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return [line for line in text.splitlines() if line.strip()]

    def _state_ok(self, port: int) -> bool:
        raw = self.command(port, "CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return "cluster_state:ok" in text

    def _coverage(self, port: int) -> dict[tuple[int, int], int]:
        return {(int(e[0]), int(e[1])): int(e[2][1]) for e in self.command(port, "CLUSTER", "SLOTS")}

    def _replication_ok(self, port: int) -> bool:
        """A primary, or a replica whose link to its primary is up."""
        info = self.command(port, "INFO", "replication")
        return info.get("role") == "master" or info.get("master_link_status") == "up"

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every live node: cluster_state:ok, replicating if a replica, every
        slot served by a live primary, and the same slot map everywhere."""

        def healthy() -> bool:
            live = {n.port for n in self.live_nodes()}
            views = []
            for port in live:
                if not self._state_ok(port) or not self._replication_ok(port):
                    return False
                coverage = self._coverage(port)
                if sum(end - start + 1 for start, end in coverage) != SLOTS:
                    return False
                if not set(coverage.values()) <= live:
                    return False
                views.append(coverage)
            return all(v == views[0] for v in views)

        _wait(healthy, timeout, "cluster healthy (state ok, all slots on live primaries, one view)", 0.1)

    # --- faults ---------------------------------------------------------------------

    def _node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def kill(self, port: int) -> None:
        """kill -9 of one node (nothing is flushed, no goodbye)."""
        node = self._node(port)
        assert node.proc is not None
        self._served_before_kill[port] = self.slots_of(port)
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again with its cluster config (no data: it
        rejoins as a replica of whoever took its slots, and resyncs)."""
        node = self._node(port)
        assert not node.alive, f"node {port} is running"
        self._spawn(node)
        _wait(lambda: self.command(port, "PING"), 10, f"redis node {port} restarted")
        self.wait_healthy(timeout)

    def wait_failover(self, old_primary: int, timeout: float = 30.0) -> int:
        """After ``kill(old_primary)``: waits until its slots are served by a
        live node everywhere (its replica, promoted); returns that node's port."""
        served = self._served_before_kill.get(old_primary)
        if not served:
            raise ValueError(f"{old_primary} served no slots when it was killed")
        self.wait_healthy(timeout)
        return self.owner_of_slot(served[0][0])

    def manual_failover(self, replica_port: int, timeout: float = 30.0) -> int:
        """``CLUSTER FAILOVER`` on a replica: it takes over its primary's slots
        with no write lost, and the old primary becomes its replica (both
        stay up). Returns the old primary's port."""
        old_primary = self._primary_of(replica_port)
        self.command(replica_port, "CLUSTER", "FAILOVER")
        _wait(lambda: self.command(replica_port, "ROLE")[0] in (b"master", "master"), timeout, "manual failover")
        self.wait_healthy(timeout)
        return old_primary

    def cut_replication(self, replica_port: int) -> None:
        """Stop ``replica_port`` from receiving its primary's writes while both
        stay up (needs a password): the replica is given a wrong one, then its
        link is killed on the primary. Writes made meanwhile exist only on the
        primary, so a failover to this replica loses them."""
        if not self.password:
            raise RuntimeError("cut_replication needs a cluster started with a password")
        primary = self._primary_of(replica_port)
        self.command(replica_port, "CONFIG", "SET", "masterauth", "wrong-" + self.password)
        self.command(primary, "CLIENT", "KILL", "TYPE", "replica")

        def link_down() -> bool:
            return self.command(replica_port, "INFO", "replication").get("master_link_status") == "down"

        _wait(link_down, 10, f"replication to {replica_port} cut")

    def restore_replication(self, replica_port: int) -> None:
        assert self.password
        self.command(replica_port, "CONFIG", "SET", "masterauth", self.password)

    def _primary_of(self, replica_port: int) -> int:
        info = self.command(replica_port, "INFO", "replication")
        if info.get("role") != "slave":
            raise LookupError(f"{replica_port} is not a replica")
        return int(info["master_port"])

    def migrate_slot(self, slot: int, target_port: int) -> int:
        """Move one slot, with its keys, to ``target_port`` (a primary) the way
        ``redis-cli --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE
        KEYS in batches, then SETSLOT NODE on the target, the source and every
        other primary. Returns the number of keys moved."""
        source_port = self.begin_migration(slot, target_port)
        moved = self.migrate_keys(slot, source_port, target_port)
        self.finish_migration(slot, target_port)
        return moved

    def begin_migration(self, slot: int, target_port: int) -> int:
        """IMPORTING on the target, MIGRATING on the source; returns the source."""
        source_port = self.owner_of_slot(slot)
        if source_port == target_port:
            raise ValueError(f"slot {slot} is already on {target_port}")
        self.command(target_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source_port))
        self.command(source_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target_port))
        return source_port

    def migrate_keys(
        self, slot: int, source_port: int, target_port: int, keys: list[str] | None = None, per_call: int = 100
    ) -> int:
        """MIGRATE the given keys (default: every key of the slot, in batches)."""
        auth: list[Any] = ["AUTH", self.password] if self.password else []
        moved = 0
        while True:
            batch = keys if keys is not None else self.command(source_port, "CLUSTER", "GETKEYSINSLOT", slot, per_call)
            if not batch:
                return moved
            self.command(source_port, "MIGRATE", "127.0.0.1", target_port, "", 0, 5000, *auth, "KEYS", *batch)
            moved += len(batch)
            if keys is not None:
                return moved

    def finish_migration(self, slot: int, target_port: int) -> None:
        """Move whatever keys are left, then SETSLOT NODE everywhere."""
        target_id = self.node_id(target_port)
        source_port = self.owner_of_slot(slot)
        if source_port != target_port:
            self.migrate_keys(slot, source_port, target_port)
        ports = [target_port, source_port] + [p for p in self.primary_ports() if p not in (source_port, target_port)]
        for port in dict.fromkeys(ports):
            self.command(port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_healthy()

    def pubsub_shard_channels(self, port: int) -> list[str]:
        return sorted(c.decode() if isinstance(c, bytes) else c for c in self.command(port, "PUBSUB", "SHARDCHANNELS"))

    def pubsub_channels(self, port: int) -> list[str]:
        return sorted(c.decode() if isinstance(c, bytes) else c for c in self.command(port, "PUBSUB", "CHANNELS"))

    def client_list(self, port: int) -> list[dict[str, str]]:
        raw = self.command(port, "CLIENT", "LIST")
        if isinstance(raw, list):
            return [{k: str(v) for k, v in entry.items()} for entry in raw]
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        out = []
        for line in text.splitlines():
            out.append(dict(field.split("=", 1) for field in line.split() if "=" in field))
        return out
