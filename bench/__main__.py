"""``python -m bench``: every benchmark, each contender in a fresh interpreter, with ratios.

Options: ``--quick`` measures 3 s instead of 10 s per precision run; names (``precision``,
``throughput``, ``setup``, ``tickets``, ``webhook``) run only those parts.
"""

from __future__ import annotations

import sys

from bench.common import run_child

CONTENDERS = ("floor", "ours", "apscheduler")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:5.2f}x" if base else "  n/a"


def precision(seconds: float) -> None:
    print("\n1. Scheduling precision: interval 1 s, phases spread, no-op pipeline")
    print(f"   {seconds:g} s measured after 2 s warm-up; lateness against each runner's grid")
    for runners in (1_000, 10_000):
        results = {c: run_child("precision", c, str(runners), str(seconds)) for c in CONTENDERS}
        floor = results["floor"]
        print(f"\n   {runners:,} runners ({runners:,} fires/s)")
        print(
            f"   {'':12} {'fires':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'CPU us/fire':>12} {'CPU vs floor':>12}"
        )
        for name, r in results.items():
            print(
                f"   {name:12} {r['fires']:7d} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
                f"{r['max_ms']:8.3f} {r['cpu_us_per_fire']:12.1f} "
                f"{_ratio(r['cpu_us_per_fire'], floor['cpu_us_per_fire']):>12}"
            )
        margin = 2.0 if runners == 1_000 else 5.0
        ours = results["ours"]
        p99_ok = ours["p99_ms"] <= floor["p99_ms"] + margin
        cpu_ok = ours["cpu_us_per_fire"] <= 2 * floor["cpu_us_per_fire"]
        print(
            f"   target p99 <= floor p99 + {margin:g} ms: {'met' if p99_ok else 'MISSED'} "
            f"({ours['p99_ms'] - floor['p99_ms']:+.3f} ms); "
            f"CPU <= 2x floor: {'met' if cpu_ok else 'MISSED'}"
        )
    shared_trigger(seconds)


def shared_trigger(seconds: float) -> None:
    runners = 10_000
    print(f"\n   {runners:,} runners on ONE shared 1 s interval trigger, without and with spread")
    results = {
        "no spread": run_child("precision", "shared", str(runners), str(seconds)),
        "spread": run_child("precision", "shared_spread", str(runners), str(seconds)),
    }
    print(f"   {'':12} {'fires':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU us/fire':>12}")
    for name, r in results.items():
        print(
            f"   {name:12} {r['fires']:7d} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
            f"{r['max_ms']:8.3f} {r['cpu_us_per_fire']:12.1f}"
        )
    plain, spread = results["no spread"], results["spread"]
    print(
        "   spread vs no spread: "
        + ", ".join(
            f"{key[:-3]} {_ratio(spread[key], plain[key]).strip()}"
            for key in ("p50_ms", "p99_ms", "max_ms")
        )
    )


def throughput() -> None:
    print("\n2. Pipeline throughput: CompositePipe of 3 templated ExpressionPipe steps")
    r = run_child("throughput")
    print(
        f"   {r['per_second']:,.0f} executions/s ({r['executions']:,} in all); "
        f"target 5,000/s: {_ratio(r['per_second'], 5000)} "
        f"({'met' if r['per_second'] >= 5000 else 'MISSED'})"
    )


def setup_scale() -> None:
    print("\n3. Scale of set-up: load, validate and arm 10,000 runners")
    results = {c: run_child("setup_scale", c, "10000") for c in CONTENDERS}
    print(f"   {'':12} {'seconds':>8} {'RSS MB':>8} {'time vs APScheduler':>20}")
    for name, r in results.items():
        print(
            f"   {name:12} {r['seconds']:8.3f} {r['rss_mb']:8.1f} "
            f"{_ratio(r['seconds'], results['apscheduler']['seconds']):>20}"
        )
    ours = results["ours"]
    ok = ours["seconds"] < 2 and ours["rss_mb"] < 100
    print(f"   target < 2 s and < 100 MB: {'met' if ok else 'MISSED'}")


def tickets() -> None:
    print("\n4. Ticket automation: the route runner of examples/ticket-routing.yml")
    print("   (fetch, classify queue and priority, note, update) over 200 waiting tickets")
    r = run_child("tickets", timeout=1200)
    print(f"   embedded helpdesk (SQLite)   {r['embedded_per_s']:8.1f} tickets/s")
    rt = r["rt_per_s"]
    if isinstance(rt, int | float):
        print(
            f"   Request Tracker 5 (REST2)    {rt:8.1f} tickets/s   "
            f"({_ratio(rt, r['embedded_per_s'])} of embedded)"
        )
    else:
        print(f"   Request Tracker 5 (REST2)    {rt}")
    print("   classification latency per ticket (one ticket per call):")
    sk = r["sklearn_ms"]
    print(f"   scikit-learn (TF-IDF + logistic regression)   {sk:7.2f} ms")
    tf = r["transformers_ms"]
    if isinstance(tf, int | float):
        print(f"   transformers (tiny 2-layer BERT, CPU)         {tf:7.2f} ms   ({_ratio(tf, sk)})")
    else:
        print(f"   transformers: {tf}")


def webhook() -> None:
    print("\n5. Webhooks: HMAC-signed JSON to a WebhookTrigger of `otai run`, on loopback")
    for connections in ("1", "8"):
        r = run_child("webhook", "--connections", connections, "--seconds", "5")
        print(
            f"   {connections} connection(s): {r['per_second']:,.0f} requests/s, "
            f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms "
            f"({r['accepted']} accepted, {r['refused']} refused)"
        )


def main() -> None:
    seconds = 3.0 if "--quick" in sys.argv else 10.0
    only = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    parts = {
        "precision": lambda: precision(seconds),
        "throughput": throughput,
        "setup": setup_scale,
        "tickets": tickets,
        "webhook": webhook,
    }
    for name, part in parts.items():
        if not only or name in only:
            part()


if __name__ == "__main__":
    main()
