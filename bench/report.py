"""The summary (median and min-max over rounds), the ratios to the floor, the
issue-11 targets, the tables and the plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

DESIGN_ORDER = ["floor", "naive", "switchboard", "switchboard-nofast"]


def _get(path: str) -> Callable[[dict[str, Any]], float | None]:
    keys = path.split(".")

    def get(r: dict[str, Any]) -> float | None:
        value: Any = r
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value if isinstance(value, (int, float)) else None

    return get


def _close(code: str) -> Callable[[dict[str, Any]], float | None]:
    def get(r: dict[str, Any]) -> float | None:
        return float(r["closes"].get(code, 0)) if "closes" in r else None

    return get


# name -> (getter, label, format)
METRICS: dict[str, tuple[Callable[[dict[str, Any]], float | None], str, str]] = {
    "delivered_fraction": (_get("delivered_fraction"), "delivered", "{:.4f}"),
    "deliveries_per_s": (_get("deliveries_per_s"), "deliv/s", "{:,.0f}"),
    "p50_ms": (_get("latency_ms.p50"), "p50 ms", "{:.1f}"),
    "p99_ms": (_get("latency_ms.p99"), "p99 ms", "{:.1f}"),
    "cpu_us_per_delivery": (_get("cpu_us_per_delivery"), "CPU µs/deliv", "{:.1f}"),
    "rss_kb_per_conn": (_get("rss_kb_per_conn"), "KB/conn", "{:.1f}"),
    "setup_s": (_get("setup_s"), "fill s", "{:.1f}"),
    "setup_cpu_ms_per_conn": (_get("setup_cpu_ms_per_conn"), "setup CPU ms/conn", "{:.2f}"),
    "cpu_ms_per_join": (_get("cpu_ms_per_join"), "CPU ms/join", "{:.3f}"),
    "join_p99_ms": (_get("join_ms.p99"), "join p99 ms", "{:.1f}"),
    "closes_1011": (_close("1011"), "1011 closes", "{:.0f}"),
    "closes_1013": (_close("1013"), "1013 closes", "{:.0f}"),
    "other_cpu_s": (_get("other_cpu_s"), "other CPU s", "{:.1f}"),
}
# Compared with the floor (lower is better for all of them).
RATIO_METRICS = ["cpu_us_per_delivery", "p99_ms", "rss_kb_per_conn", "setup_s", "setup_cpu_ms_per_conn",
                 "cpu_ms_per_join"]


def _fmt(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def summary_line(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"FAILED: {r['failed']}"
    head = (f"{r['connected']}/{r['connections']} connected in {r['setup_s']} s "
            f"(server CPU {r['setup_cpu_ms_per_conn']} ms/conn); RSS {r['rss_kb_per_conn']} KB/conn "
            f"(Redis {r['redis_rss_kb_per_conn']})")
    if "joins" in r:
        head += (f"; {r['joins']} probe joins: {r['cpu_ms_per_join']} ms CPU/join, "
                 f"round trip p50 {r['join_ms']['p50']} p99 {r['join_ms']['p99']} ms")
    if "delivered" in r:
        lat = r["latency_ms"]
        head += (f"; {r['delivered']}/{r['expected']} delivered ({r['delivered_fraction']:.4f}), "
                 f"{r['deliveries_per_s']:.0f}/s, p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms, "
                 f"server CPU {r['server_cpu_s']} s = {r['cpu_us_per_delivery']} µs/delivery, "
                 f"Redis {r['redis_cpu_s']} s, clients {r['client_cpu_s']} s, machine busy {r['machine_busy']:.0%} "
                 f"(other processes {r.get('other_cpu_s', '?')} CPU-s)")
    if r.get("errors"):
        head += f", errors {r['errors']}"
    if r.get("close_reasons"):
        head += f", closes {r['close_reasons']}"
    return head


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarise(doc: dict[str, Any]) -> None:
    """doc["summary"][workload][design][metric] = {median, min, max, n};
    doc["ratios"][workload][design][metric] = {median: ratio of medians,
    min/max: of the per-round ratios}; doc["targets"]."""
    measured = [r for r in doc["results"] if "skipped" not in r]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for r in measured:
        entry = summary.setdefault(r["workload"], {}).setdefault(r["design"], {"runs": 0, "failed": 0})
        entry["runs"] += 1
        if "failed" in r:
            entry["failed"] += 1
    for workload, designs in summary.items():
        for design, entry in designs.items():
            runs = [r for r in measured if r["workload"] == workload and r["design"] == design and "failed" not in r]
            for name, (get, _, _) in METRICS.items():
                values = [v for v in (get(r) for r in runs) if v is not None]
                if values:
                    entry[name] = _spread(values)
    ratios: dict[str, dict[str, dict[str, Any]]] = {}
    for workload, designs in summary.items():
        floor = designs.get("floor", {})
        floor_runs = {r.get("round"): r for r in measured
                      if r["workload"] == workload and r["design"] == "floor" and "failed" not in r}
        for design, entry in designs.items():
            if design == "floor":
                continue
            runs = [r for r in measured if r["workload"] == workload and r["design"] == design and "failed" not in r]
            out: dict[str, Any] = {}
            for name in RATIO_METRICS:
                if name not in entry or name not in floor or not floor[name]["median"]:
                    continue
                get = METRICS[name][0]
                paired = []
                for r in runs:
                    f = floor_runs.get(r.get("round"))
                    a, b = get(r), get(f) if f is not None else None
                    if a is not None and b:
                        paired.append(a / b)
                out[name] = {"median": round(entry[name]["median"] / floor[name]["median"], 3)}
                if paired:
                    out[name].update(min=round(min(paired), 3), max=round(max(paired), 3))
            if out:
                ratios.setdefault(workload, {})[design] = out
    doc["summary"] = summary
    doc["ratios"] = ratios
    doc["targets"] = targets(summary, ratios)


# Issue 11's targets: (workload, metric, limit) on Switchboard's ratio to the floor.
TARGETS = [
    ("room5k", "rss_kb_per_conn", 1.3),
    ("room5k", "setup_cpu_ms_per_conn", 1.5),
    ("w1a", "cpu_us_per_delivery", 1.0),
    ("w1a", "p99_ms", 1.0),
    ("w4", "cpu_us_per_delivery", 1.2),
    ("w4", "p99_ms", 1.2),
    ("w4", "setup_s", 1.2),
    ("big20k", "setup_s", 1.5),
    ("big20k", "rss_kb_per_conn", 1.5),
    ("big20k", "p99_ms", 1.5),
]


def targets(summary: dict[str, Any], ratios: dict[str, Any], design: str = "switchboard") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for workload, metric, limit in TARGETS:
        ratio = ratios.get(workload, {}).get(design, {}).get(metric)
        if ratio is not None:
            out.append({"what": f"{workload} {METRICS[metric][1]} / floor", "value": ratio["median"],
                        "target": f"<= {limit}", "met": ratio["median"] <= limit})
    w1b = summary.get("w1b", {}).get(design, {})
    if "delivered_fraction" in w1b:
        value = w1b["delivered_fraction"]["min"]
        keepalive = w1b.get("closes_1011", {}).get("max", 0)
        out.append({"what": "w1b delivered (worst round) and 1011 closes (worst round)",
                    "value": f"{value:.4f}, {keepalive:.0f}", "target": "1.0000, 0",
                    "met": value == 1.0 and keepalive == 0})
    j10 = summary.get("join10", {}).get(design, {}).get("cpu_ms_per_join")
    j10k = summary.get("join10k", {}).get(design, {}).get("cpu_ms_per_join")
    if j10 and j10k and j10["median"]:
        value = round(j10k["median"] / j10["median"], 3)
        out.append({"what": "CPU per join: room of 10,000 / room of 10", "value": value, "target": "<= 2",
                    "met": value <= 2})
    return out


def _order(designs: dict[str, Any]) -> list[str]:
    rank = {d: i for i, d in enumerate(DESIGN_ORDER)}
    return sorted(designs, key=lambda d: rank.get(d, 99))


def _cell(entry: dict[str, Any], name: str) -> str:
    s = entry.get(name)
    if s is None:
        return "-"
    fmt = METRICS[name][2]
    if s["n"] == 1 or s["min"] == s["max"]:
        return _fmt(s["median"], fmt)
    return f"{_fmt(s['median'], fmt)} ({_fmt(s['min'], fmt)}–{_fmt(s['max'], fmt)})"


def _table(summary: dict[str, Any], workloads: list[str], names: list[str]) -> list[str]:
    lines = ["| workload | design | " + " | ".join(METRICS[n][1] for n in names) + " |",
             "|" + "|".join(["---"] * (len(names) + 2)) + "|"]
    for workload in workloads:
        for design in _order(summary.get(workload, {})):
            entry = summary[workload][design]
            if entry["failed"] == entry["runs"]:
                lines.append(f"| {workload} | {design} | failed |" + " |" * (len(names) - 1))
                continue
            cells = " | ".join(_cell(entry, n) for n in names)
            note = f" ({entry['failed']} failed)" if entry["failed"] else ""
            lines.append(f"| {workload} | {design}{note} | {cells} |")
    return lines


def tables(doc: dict[str, Any]) -> str:
    summary = doc["summary"]
    order = list(dict.fromkeys(r["workload"] for r in doc["results"]))
    traffic = [w for w in order if any("delivered_fraction" in e for e in summary.get(w, {}).values())]
    probe = [w for w in order if any("cpu_ms_per_join" in e for e in summary.get(w, {}).values())]
    lines = [f"Medians over {doc.get('reps', 1)} rounds, (min–max) when they differ; loop: {doc.get('loop', '?')}.",
             ""]
    if traffic:
        lines.append("Traffic:")
        lines += _table(summary, traffic, ["delivered_fraction", "deliveries_per_s", "p50_ms", "p99_ms",
                                           "cpu_us_per_delivery", "closes_1011", "closes_1013", "other_cpu_s"])
        lines.append("")
    lines.append("Setup and memory:")
    lines += _table(summary, order, ["setup_s", "setup_cpu_ms_per_conn", "rss_kb_per_conn"])
    if probe:
        lines.append("")
        lines.append("Joins in the measured phase:")
        lines += _table(summary, probe, ["cpu_ms_per_join", "join_p99_ms"])
    skipped = [r for r in doc["results"] if "skipped" in r]
    if skipped:
        lines.append("")
        lines += [f"(not run: {r['design']} on {r['workload']}: {r['skipped']})" for r in skipped]
    lines.append("")
    lines.append("Ratios to the floor: ratio of the medians (min–max of the per-round ratios):")
    names = RATIO_METRICS
    lines.append("| workload | design | " + " | ".join(METRICS[n][1] for n in names) + " |")
    lines.append("|" + "|".join(["---"] * (len(names) + 2)) + "|")
    for workload in order:
        for design in _order(doc["ratios"].get(workload, {})):
            e = doc["ratios"][workload][design]
            cells = []
            for n in names:
                if n not in e:
                    cells.append("-")
                elif "min" in e[n] and e[n]["min"] != e[n]["max"]:
                    cells.append(f"{e[n]['median']:.2f}× ({e[n]['min']:.2f}–{e[n]['max']:.2f})")
                else:
                    cells.append(f"{e[n]['median']:.2f}×")
            lines.append(f"| {workload} | {design} | " + " | ".join(cells) + " |")
    if doc.get("targets"):
        lines.append("")
        lines.append("Issue 11 targets (Switchboard):")
        for t in doc["targets"]:
            lines.append(f"  {t['what']}: {t['value']} (target {t['target']}) -> {'MET' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = doc["summary"]
    order = list(dict.fromkeys(r["workload"] for r in doc["results"]))
    def join_cpu(entry: dict[str, Any]) -> dict[str, float] | None:
        # Probe workloads: the measured joins alone; idle ones: setup CPU per connection.
        return entry.get("cpu_ms_per_join") or entry.get("setup_cpu_ms_per_conn")

    panels: list[tuple[str, Callable[[dict[str, Any]], dict[str, float] | None], list[str] | None, bool]] = [
        ("fan-out latency p99 (ms, log)", lambda e: e.get("p99_ms"), None, True),
        ("server CPU per delivery (µs)", lambda e: e.get("cpu_us_per_delivery"), None, False),
        ("server RSS per connection (KB)", lambda e: e.get("rss_kb_per_conn"), None, False),
        ("server CPU per join (ms; ROOM5K/W3: per connect+join)", join_cpu, ["w3", "room5k", "join10", "join10k"],
         False),
    ]
    colors = {"floor": "#4c72b0", "naive": "#c44e52", "switchboard": "#55a868", "switchboard-nofast": "#8fbf9a"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for ax, (label, pick, only, log) in zip(axes.flat, panels):
        workloads = [w for w in order if (only is None or w in only)
                     and any(pick(e) for e in summary.get(w, {}).values())]
        designs = [d for d in DESIGN_ORDER if any(d in summary.get(w, {}) for w in workloads)]
        width = 0.8 / max(1, len(designs))
        for i, design in enumerate(designs):
            xs, ys, lo, hi = [], [], [], []
            for j, w in enumerate(workloads):
                s = pick(summary.get(w, {}).get(design, {}))
                if s is None:
                    continue
                xs.append(j + (i - (len(designs) - 1) / 2) * width)
                ys.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
            bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=design, color=colors.get(design))
            ax.bar_label(bars, labels=[f"{v:.3g}" for v in ys], fontsize=6, padding=1)
        ax.set_xticks(range(len(workloads)), [w.upper() for w in workloads], fontsize=8)
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"Switchboard bench {doc['started']}: medians of {doc.get('reps', 1)} interleaved rounds, "
                 f"bars min–max (scale {doc['scale']}, {doc.get('loop', '?')}, {doc['machine']['cores']} cores)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
