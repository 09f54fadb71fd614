"""Re-measure issue 10's findings (docs/security.md) against a source tree:
default settings, one gateway on a private redis-server, and
FORWARDED_ALLOW_IPS='' so the loopback client counts as a remote address.

    .venv/bin/python scripts/security/findings.py [SRC_ROOT] [header,idle,slow,guests,keys,user,offsets,glob]

SRC_ROOT (default: this checkout) may be another checkout, e.g. one of the
code before the fixes, to measure the "before" column. Bounded: at most
16 MB sent per flood, 2,000 sockets, about two minutes in all.
"""
import asyncio, base64, os, re, socket, subprocess, sys, time
from pathlib import Path
root = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].isalpha() else str(Path(__file__).resolve().parents[2])
which = set(sys.argv[-1].split(",")) if len(sys.argv) > 1 and sys.argv[-1].replace(",", "").isalpha() else None
sys.path[:0] = [f"{root}/services/shared", f"{root}/services/gateway", f"{Path(__file__).resolve().parents[2]}/tests/harness"]
from switchboard_harness import RedisProcess, free_port, TEST_JWT_SECRET, TEST_API_KEY
from switchboard.client import Client, ClientClosed, make_token
import httpx

def rss(pid): return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))

class GW:
    def __init__(self, redis, **env):
        self.port = free_port()
        e = {**os.environ, "PYTHONPATH": f"{root}/services/shared:{root}/services/gateway", "REDIS_URL": redis.url,
             "JWT_SECRET": TEST_JWT_SECRET, "API_KEY": TEST_API_KEY, "PORT": str(self.port), "HOST": "127.0.0.1",
             "LOG_LEVEL": "warning", "NODE_ID": "m", "FORWARDED_ALLOW_IPS": "", "ALLOW_GUESTS": "true",
             "REDIS_PREFIX": "f" + os.urandom(3).hex(), **{k: str(v) for k, v in env.items()}}
        self.prefix = e["REDIS_PREFIX"]
        self.p = subprocess.Popen([sys.executable, "-m", "switchboard_gateway"], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try: socket.create_connection(("127.0.0.1", self.port), 0.2).close(); break
            except OSError: time.sleep(0.05)
        time.sleep(0.5)
    @property
    def url(self): return f"ws://127.0.0.1:{self.port}/ws"
    def kill(self): self.p.kill(); self.p.wait()

def until_closed(s, limit):
    t0 = time.monotonic(); data = b""
    s.settimeout(0.5)
    while time.monotonic() - t0 < limit:
        try:
            c = s.recv(65536)
        except socket.timeout: continue
        except OSError: return data, time.monotonic() - t0
        if not c: return data, time.monotonic() - t0
        data += c
    return data, None

def tok(sub): return make_token(TEST_JWT_SECRET, sub, ttl=3600)

def header_flood(redis, mb=16):
    gw = GW(redis); before = rss(gw.p.pid)
    s = socket.create_connection(("127.0.0.1", gw.port)); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX: ")
    sent = 0; chunk = b"a" * 65536; s.settimeout(2); t0 = time.monotonic(); answer = b""
    while sent < mb * 1e6:
        try: s.sendall(chunk); sent += len(chunk)
        except OSError: break
        s.setblocking(False)
        try: answer = s.recv(200)
        except BlockingIOError: pass
        except OSError: break
        s.settimeout(2)
        if answer: break
    grown = (rss(gw.p.pid) - before) / 1024
    if not answer:
        answer, _ = until_closed(s, 5)
    print(f"1 header flood: {sent/1e6:.2f} MB sent; answer {answer[:12]!r}; gateway RSS +{grown:.1f} MiB")
    gw.kill()

def idle_sockets(redis, n=2000):
    gw = GW(redis)
    socks = []; refused = 0
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", gw.port)); socks.append(s)
    time.sleep(0.5)
    for s in socks:
        s.setblocking(False)
        try:
            d = s.recv(100)
            if d.startswith(b"HTTP/1.1 503"): refused += 1
        except BlockingIOError: pass
        except OSError: refused += 1
    t0 = time.monotonic(); open_ = set(range(len(socks)))
    while open_ and time.monotonic() - t0 < 40:
        for i in list(open_):
            try:
                d = socks[i].recv(100)
                if d == b"": open_.discard(i)
            except BlockingIOError: pass
            except OSError: open_.discard(i)
        time.sleep(0.2)
    took = time.monotonic() - t0
    print(f"3 {n} idle sockets from one address: {refused} refused at once; the rest {'closed within %.1f s' % (took + 0.5) if not open_ else '%d still open after 40 s' % len(open_)}")
    for s in socks: s.close()
    gw.kill()

def slow_requests(redis):
    gw = GW(redis)
    for name, data in (("partial request line", b"GET /heal"), ("headers never ending", b"GET / HTTP/1.1\r\nHost: x\r\n"),
                       ("body never ending", b'POST /auth/guest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"n')):
        s = socket.create_connection(("127.0.0.1", gw.port)); s.sendall(data)
        ans, took = until_closed(s, 80)
        print(f"3 {name}: {ans[:12]!r}, closed after {took if took is None else round(took, 1)} s")
    s = socket.create_connection(("127.0.0.1", gw.port)); t0 = time.monotonic(); closed = None
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"d" * 500:
        try: s.sendall(bytes([b]))
        except OSError: closed = time.monotonic() - t0; break
        s.settimeout(0.5)
        try:
            if s.recv(100) is not None: closed = time.monotonic() - t0; break
        except socket.timeout: pass
        if time.monotonic() - t0 > 80: break
    print(f"3 dripped headers (1 byte / 0.5 s): cut after {closed if closed is None else round(closed, 1)} s")
    s = socket.create_connection(("127.0.0.1", gw.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws?token={'a'*9000} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    ans, took = until_closed(s, 20)
    print(f"3 upgrade with a 9 KB request line: {ans[:12]!r}, closed after {took if took is None else round(took, 1)} s")
    gw.kill()

def guests(redis):
    gw = GW(redis)
    with httpx.Client(base_url=f"http://127.0.0.1:{gw.port}") as h:
        ids = [h.post("/auth/guest", json={"name": "Ada Lovelace"}).json().get("user", {}).get("id") for _ in range(1)]
        codes = [h.post("/auth/guest", json={"name": f"g{n}"}).status_code for n in range(29)]
    print(f"5 30 guest sign-ins from one address: {codes.count(200) + 1} ok, {codes.count(429)} refused (429); ids like {ids[0]}")
    gw.kill()
    gw = GW(redis)
    before = rss(gw.p.pid)
    s = socket.create_connection(("127.0.0.1", gw.port)); t0 = time.monotonic()
    s.sendall(b"POST /auth/guest HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n")
    sent = 0; s.settimeout(0.2); answer = b""
    while sent < 200e6 and time.monotonic() - t0 < 60:
        try: s.sendall(b"[" * 65536); sent += 65536
        except (socket.timeout, OSError): break
        if sent % (1 << 22) == 0:
            s.setblocking(False)
            try: answer = s.recv(100)
            except BlockingIOError: pass
            except OSError: break
            s.settimeout(0.2)
            if answer: break
    if not answer:
        try: s.settimeout(20); answer = s.recv(100)
        except OSError as e: answer = repr(e).encode()
    print(f"6 200 MB body to /auth/guest: {answer[:12]!r} after {sent/1e6:.1f} MB / {time.monotonic()-t0:.1f} s; RSS +{(rss(gw.p.pid)-before)/1024:.1f} MiB")
    gw.kill()

def keys(redis):
    gw = GW(redis, FRAME_RATE=100000, FRAME_BURST=100000)  # unthrottled: show what the frames themselves write
    import redis as r_
    rc = r_.Redis.from_url(redis.url)
    async def go():
        async with await Client.connect(gw.url, tok("k")) as c:
            for n in range(500):
                await c.history(f"h-{n}")
            for n in range(40):
                await c.join(f"j-{n}"); await c.leave(f"j-{n}")
    asyncio.run(go())
    n = len(list(rc.scan_iter(match=f"{gw.prefix}:*", count=1000)))
    ttls = {rc.ttl(k) for k in rc.scan_iter(match=f"{gw.prefix}:*", count=1000)}
    print(f"7 500 history + 40 join/leave of new rooms: {n} Redis keys left (TTLs {sorted(ttls)[:3]})")
    gw.kill()

def per_user(redis):
    gw = GW(redis, ABUSE_ERRORS=100000)  # count refusals instead of closing
    async def go():
        cs = [await Client.connect(gw.url, tok("u")) for _ in range(10)]
        for c in cs: await c.join("r")
        replies = await asyncio.gather(*(c.publish("r", f"{i}-{k}") for i, c in enumerate(cs) for k in range(30)))
        acks = sum(r["type"] == "ack" for r in replies)
        for c in cs: await c.close()
        cs = [await Client.connect(gw.url, tok("u")) for _ in range(10)]
        for c in cs: await c.join("r")
        again = await asyncio.gather(*(c.publish("r", "again") for c in cs))
        acks2 = sum(r["type"] == "ack" for r in again)
        for c in cs: await c.close()
        t = await Client.connect(gw.url, tok("t")); w = await Client.connect(gw.url, tok("w"))
        await t.join("ty"); await w.join("ty")
        for _ in range(90):  # within the frame budget (100): the typing limit is what refuses
            await t.send({"type": "typing", "room": "ty"})
        await t.ping(); await t.publish("ty", "end")
        relayed = 0
        while True:
            f = await w.recv(timeout=10)
            if f["type"] == "message": break
            relayed += f["type"] == "typing"
        await t.close(); await w.close()
        return acks, acks2, relayed
    try:
        acks, acks2, relayed = asyncio.run(go())
        print(f"8 10 sockets of one user x 30 publishes: {acks} acked; 10 fresh sockets right after: {acks2} acked; 90 typing frames: {relayed} relayed")
    except ClientClosed as e:
        print(f"8 per-user: closed {e}")
    gw.kill()

def offsets(redis):
    gw = GW(redis)
    async def go():
        async with await Client.connect(gw.url, tok("o")) as c:
            await c.join("o"); await c.publish("o", "x")
            return await c.history("o", before=10**15)
    r = asyncio.run(go())
    print(f"12 history before=1e15: {r.get('type')} {r.get('code', '')}")
    gw.kill()

def glob():
    try:
        from switchboard.protocol.names import room_allowed
    except ImportError:
        return
    t0 = time.perf_counter(); room_allowed("a" * 64, ("*a*a*a*a*a*a*b",)); took = time.perf_counter() - t0
    print(f"17 glob *a*a*a*a*a*a*b vs 64 a: {took*1e3:.3f} ms")

redis = RedisProcess().start()
try:
    for name, fn in (("header", header_flood), ("idle", idle_sockets), ("slow", slow_requests), ("guests", guests),
                     ("keys", keys), ("user", per_user), ("offsets", offsets)):
        if which is None or name in which:
            try: fn(redis)
            except Exception as e: print(f"{name}: {type(e).__name__}: {e}")
    if which is None or "glob" in which: glob()
finally:
    redis.cleanup()
