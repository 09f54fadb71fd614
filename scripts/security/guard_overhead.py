"""CPU and memory of the server-layer guard (protocols.py) against uvicorn's
stock protocols, same app: gateway CPU per keep-alive HTTP request, per
WebSocket handshake, and RSS per idle WebSocket (2,000 of them). Three
rounds each; the machine's noise shows in the spread.

    ulimit -n 8192; .venv/bin/python scripts/security/guard_overhead.py
"""
import asyncio, base64, os, re, subprocess, sys, time, socket
from pathlib import Path
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "harness"))
from switchboard_harness import RedisProcess, free_port, TEST_JWT_SECRET
from switchboard.client import make_token

def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def rss_kib(pid):
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))

async def http_load(port, conns, per_conn):
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    async def one():
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(per_conn):
            w.write(req)
            await r.readuntil(b"ok")
        w.close()
    await asyncio.gather(*(one() for _ in range(conns)))

async def ws_open(port, n, token):
    socks = []
    for i in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        w.write(f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await r.readuntil(b"\r\n\r\n")
        await r.readuntil(b"welcome")
        socks.append((r, w))
    return socks

def run(mode, redis):
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis.url, "JWT_SECRET": TEST_JWT_SECRET, "PORT": str(port), "HOST": "127.0.0.1",
           "NODE_ID": mode, "MAX_CONNECTIONS_PER_USER": "0", "REDIS_PREFIX": f"m{mode}"}
    gw = subprocess.Popen([sys.executable, str(HERE / "launch.py"), mode], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try: socket.create_connection(("127.0.0.1", port), 0.2).close(); break
            except OSError: time.sleep(0.05)
        time.sleep(1.0)
        token = make_token(TEST_JWT_SECRET, "m", ttl=3600)
        asyncio.run(http_load(port, 10, 50))  # warm up
        c0 = cpu_s(gw.pid); t0 = time.monotonic()
        asyncio.run(http_load(port, 50, 200))
        http_cpu = (cpu_s(gw.pid) - c0) / 10000; http_wall = time.monotonic() - t0
        async def ws_phase():
            warm = await ws_open(port, 50, token)
            for r, w in warm: w.close()
            await asyncio.sleep(1)
            r0 = rss_kib(gw.pid); c0 = cpu_s(gw.pid)
            socks = await ws_open(port, 2000, token)
            c1 = cpu_s(gw.pid)
            await asyncio.sleep(2)
            r1 = rss_kib(gw.pid)
            for r, w in socks: w.close()
            return (c1 - c0) / 2000, (r1 - r0) / 2000
        ws_cpu, ws_kib = asyncio.run(ws_phase())
        print(f"{mode:8s} HTTP: {http_cpu*1e6:6.1f} µs CPU/request ({10000/http_wall:5.0f} req/s); "
              f"WS: {ws_cpu*1e6:6.0f} µs CPU/handshake, {ws_kib:5.1f} KiB RSS/idle connection", flush=True)
    finally:
        gw.kill(); gw.wait()

redis = RedisProcess().start()
try:
    for rnd in range(3):
        for mode in ("stock", "guarded"):
            run(mode, redis)
finally:
    redis.cleanup()
