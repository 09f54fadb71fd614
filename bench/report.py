"""The table, the ratios to the floor, and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DESIGN_ORDER = ["floor", "naive", "switchboard"]
TARGET = 1.5


def _f(value: Any, fmt: str = "{:.2f}") -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def summary_line(r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"FAILED: {r['failed']}"
    if "delivered" not in r:
        return (f"{r['connected']}/{r['connections']} joined in {r['setup_s']} s; "
                f"RSS {r['rss_kb_per_conn']} KB/conn (Redis {r['redis_rss_kb_per_conn']} KB/conn)")
    lat = r["latency_ms"]
    return (f"{r['delivered']}/{r['expected']} delivered ({r['delivered_fraction']:.4f}), "
            f"{r['deliveries_per_s']:.0f}/s, p50 {lat['p50']} ms p99 {lat['p99']} ms max {lat['max']} ms, "
            f"server CPU {r['server_cpu_s']} s = {r['cpu_us_per_delivery']} us/delivery, "
            f"Redis CPU {r['redis_cpu_s']} s, clients {r['client_cpu_s']} s, machine busy {r['machine_busy']:.0%}"
            + (f", errors {r['errors']}" if r["errors"] else "")
            + (f", closes {r['closes']}" if r["closes"] else ""))


def _by(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["workload"], r["design"]): r for r in results if "failed" not in r}


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each design's figures divided by the floor's, per workload; and the
    issue's four targets for Switchboard."""
    by = _by(results)
    out: dict[str, Any] = {}
    for (workload, design), r in by.items():
        floor = by.get((workload, "floor"))
        if design == "floor" or floor is None:
            continue
        entry: dict[str, Any] = {}
        if r.get("cpu_us_per_delivery") and floor.get("cpu_us_per_delivery"):
            entry["cpu_per_delivery"] = round(r["cpu_us_per_delivery"] / floor["cpu_us_per_delivery"], 2)
        if r.get("latency_ms") and floor.get("latency_ms") and floor["latency_ms"]["p99"]:
            entry["p99"] = round(r["latency_ms"]["p99"] / floor["latency_ms"]["p99"], 2)
        if r.get("delivered_fraction") is not None:
            entry["delivered_fraction"] = r["delivered_fraction"]
        if r.get("rss_kb_per_conn") and floor.get("rss_kb_per_conn"):
            entry["rss_per_conn"] = round(r["rss_kb_per_conn"] / floor["rss_kb_per_conn"], 2)
        out.setdefault(design, {})[workload] = entry
    sb = out.get("switchboard", {})
    targets = {}
    if "cpu_per_delivery" in sb.get("w1a", {}):
        targets["cpu_per_delivery_w1a"] = {"ratio": sb["w1a"]["cpu_per_delivery"], "target": f"<= {TARGET}",
                                           "met": sb["w1a"]["cpu_per_delivery"] <= TARGET}
    if "p99" in sb.get("w1a", {}):
        targets["p99_w1a"] = {"ratio": sb["w1a"]["p99"], "target": f"<= {TARGET}", "met": sb["w1a"]["p99"] <= TARGET}
    if "rss_per_conn" in sb.get("w3", {}):
        targets["memory_per_conn_w3"] = {"ratio": sb["w3"]["rss_per_conn"], "target": f"<= {TARGET}",
                                         "met": sb["w3"]["rss_per_conn"] <= TARGET}
    if "delivered_fraction" in sb.get("w1b", {}):
        targets["delivered_fraction_w1b"] = {"value": sb["w1b"]["delivered_fraction"], "target": "== 1.0",
                                             "met": sb["w1b"]["delivered_fraction"] == 1.0}
    if targets:
        out["switchboard_targets"] = targets
    return out


def table(doc: dict[str, Any]) -> str:
    results = doc["results"]
    head = ("| workload | design | conns | delivered | deliv/s | p50 ms | p99 ms | max ms "
            "| CPU µs/deliv | CPU s/1k | Redis CPU s | KB/conn |")
    lines = [head, "|" + "|".join(["---"] * 12) + "|"]
    order = {d: i for i, d in enumerate(DESIGN_ORDER)}
    for r in sorted(results, key=lambda r: (r["workload"], order.get(r["design"], 9))):
        if "failed" in r:
            lines.append(f"| {r['workload']} | {r['design']} | failed: {r['failed'][:60]} |" + " |" * 9)
            continue
        lat = r.get("latency_ms") or {}
        lines.append(
            f"| {r['workload']} | {r['design']} | {r.get('connected', '-')} "
            f"| {_f(r.get('delivered_fraction'), '{:.4f}')} | {_f(r.get('deliveries_per_s'), '{:,.0f}')} "
            f"| {_f(lat.get('p50'))} | {_f(lat.get('p99'))} | {_f(lat.get('max'), '{:.1f}')} "
            f"| {_f(r.get('cpu_us_per_delivery'), '{:.1f}')} | {_f(r.get('cpu_s_per_1k_deliveries'), '{:.4f}')} "
            f"| {_f(r.get('redis_cpu_s'))} | {_f(r.get('rss_kb_per_conn'), '{:.1f}')} |"
        )
    rat = doc.get("ratios", {})
    lines.append("")
    lines.append("Ratios to the floor (design ÷ floor, same run):")
    lines.append("| design | workload | CPU/delivery | p99 | KB/conn | delivered |")
    lines.append("|---|---|---|---|---|---|")
    for design in DESIGN_ORDER[1:]:
        for workload, e in sorted(rat.get(design, {}).items()):
            lines.append(f"| {design} | {workload} | {_f(e.get('cpu_per_delivery'))}× | {_f(e.get('p99'))}× "
                         f"| {_f(e.get('rss_per_conn'))}× | {_f(e.get('delivered_fraction'), '{:.4f}')} |")
    targets = rat.get("switchboard_targets")
    if targets:
        lines.append("")
        lines.append("Switchboard targets:")
        for name, t in targets.items():
            value = t.get("ratio", t.get("value"))
            lines.append(f"  {name}: {value} (target {t['target']}) -> {'MET' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = _by(doc["results"])
    workloads = [w for w in dict.fromkeys(r["workload"] for r in doc["results"]) if w != "w3"]
    designs = [d for d in DESIGN_ORDER if any(k[1] == d for k in by)]
    has_w3 = any(k[0] == "w3" for k in by)
    panels = 3 if has_w3 else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    colors = {"floor": "#4c72b0", "naive": "#c44e52", "switchboard": "#55a868"}
    width = 0.8 / max(1, len(designs))
    for ax, metric, label in ((axes[0], "p99", "fan-out latency p99 (ms, log)"),
                              (axes[1], "cpu", "server CPU per delivery (µs, log)")):
        for i, design in enumerate(designs):
            xs, ys = [], []
            for j, w in enumerate(workloads):
                r = by.get((w, design))
                if r is None or "latency_ms" not in r:
                    continue
                value = r["latency_ms"]["p99"] if metric == "p99" else r.get("cpu_us_per_delivery")
                if value is None:
                    continue
                xs.append(j + (i - (len(designs) - 1) / 2) * width)
                ys.append(value)
            bars = ax.bar(xs, ys, width, label=design, color=colors.get(design))
            ax.bar_label(bars, labels=[f"{v:.3g}" for v in ys], fontsize=7, padding=1)
        ax.set_xticks(range(len(workloads)), [w.upper() for w in workloads])
        ax.set_title(label)
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    if has_w3:
        ax = axes[2]
        values = [by[("w3", d)]["rss_kb_per_conn"] if ("w3", d) in by else 0 for d in designs]
        bars = ax.bar(range(len(designs)), values, 0.6, color=[colors.get(d) for d in designs])
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8, padding=1)
        ax.set_xticks(range(len(designs)), designs)
        ax.set_title("W3 server RSS per idle connection (KB)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Switchboard bench {doc['started']} (scale {doc['scale']}, {doc['machine']['cores']} cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
