"""What deploy/haproxy/haproxy.cfg adds, checked against a local gateway:
the file with its Docker resolver swapped for one static server.

    .venv/bin/python scripts/security/haproxy_check.py
"""
import os, re, socket, subprocess, sys, time, tempfile
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))
from switchboard_harness import RedisProcess, GatewayProcess, free_port
redis = RedisProcess().start()
gw = GatewayProcess(redis.url, node_id="hp", LOG_LEVEL="info", ALLOW_GUESTS="true", FORWARDED_ALLOW_IPS="127.0.0.1")
gw.start()
cfg = open(ROOT / "deploy" / "haproxy" / "haproxy.cfg").read()
cfg = re.sub(r"resolvers docker\n(    .*\n)+", "", cfg)
cfg = cfg.replace("init-addr none resolvers docker resolve-prefer ipv4 ", "")
cfg = cfg.replace("server-template gw 1-20 gateway:8000", f"server gw1 127.0.0.1:{gw.port}")
port = free_port()
cfg = cfg.replace("bind :8080", f"bind 127.0.0.1:{port}")
cfg = re.sub(r"frontend stats\n(    .*\n)+", "", cfg)
cfg = cfg.replace("    master-worker\n", "").replace("log stdout format raw local0 info", "log stdout format raw local0 warning")
path = tempfile.mktemp(suffix=".cfg"); open(path, "w").write(cfg)
hp = subprocess.Popen(["haproxy", "-f", path, "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def conn():
    return socket.create_connection(("127.0.0.1", port), timeout=15)
try:
    for _ in range(100):
        try:
            s = conn(); s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if b"200" in s.recv(100): s.close(); break
        except OSError: pass
        time.sleep(0.1)
    s = conn(); s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    print("20 KB header via haproxy:", s.recv(100)[:12])
    s = conn(); t0 = time.monotonic(); s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    d = s.recv(100); print(f"unfinished head via haproxy: {d[:12]!r} after {time.monotonic()-t0:.1f} s")
    s = conn(); s.sendall(b"POST /auth/guest HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n")
    print("Content-Length 200 MB via haproxy:", s.recv(100)[:12])
    socks = []; failed = 0
    for i in range(230):
        try:
            c = conn(); socks.append(c)
        except OSError: failed += 1
    time.sleep(2)
    dead = 0
    for c in socks:
        c.setblocking(False)
        try:
            if c.recv(10) == b"": dead += 1
            else: dead += 1
        except BlockingIOError: pass
        except OSError: dead += 1
    print(f"230 connections from one address via haproxy: {len(socks)-dead} kept, {dead + failed} rejected")
    for c in socks: c.close()
    time.sleep(0.5)
    s = conn(); s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.99\r\nConnection: close\r\n\r\n"); s.recv(1000)
    time.sleep(0.3)
    gw.stop(); log = gw.output()
    print("spoofed X-Forwarded-For reached the gateway:", "203.0.113.99" in log)
finally:
    hp.kill(); gw.stop(); redis.cleanup()
