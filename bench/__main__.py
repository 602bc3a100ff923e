"""``python -m bench``: every benchmark, each contender in a fresh interpreter, with ratios.

Options: ``--quick`` measures 3 s instead of 10 s per precision run; names (``precision``,
``throughput``, ``setup``, ``tickets``, ``webhook``) run only those parts.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.common import run_child

CONTENDERS = ("floor", "ours", "apscheduler")
PRECISION_CONTENDERS = ("floor", "ours", "ours+ledger", "ours+console", "apscheduler")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:5.2f}x" if base else "  n/a"


def precision(seconds: float) -> None:
    print("\n1. Scheduling precision: interval 1 s, phases spread, no-op pipeline")
    print(f"   {seconds:g} s measured after 2 s warm-up; lateness against each runner's grid")
    print("   ours+ledger: ours with the run ledger on (SQLite in a temporary directory);")
    print("   its CPU includes the ledger's writer process")
    print("   ours+console: ours with the listener and the console on, and a logged-in page's")
    print("   live stream open in another process")
    for runners in (1_000, 10_000):
        results = {
            c: run_child("precision", c, str(runners), str(seconds)) for c in PRECISION_CONTENDERS
        }
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
        for name in ("ours", "ours+ledger", "ours+console"):
            r = results[name]
            p99_ok = r["p99_ms"] <= floor["p99_ms"] + margin
            cpu_ok = r["cpu_us_per_fire"] <= 2 * floor["cpu_us_per_fire"]
            print(
                f"   {name + ':':12} target p99 <= floor p99 + {margin:g} ms: "
                f"{'met' if p99_ok else 'MISSED'} ({r['p99_ms'] - floor['p99_ms']:+.3f} ms); "
                f"CPU <= 2x floor: {'met' if cpu_ok else 'MISSED'}"
            )
        _ledger_note(results["ours+ledger"], runners)
        print(
            f"   ours+console: the console's live stream was open in another process and got "
            f"{results['ours+console']['live_events']:,} run events"
        )
    shared_trigger(seconds)


def _ledger_note(r: dict[str, Any], runners: int) -> None:
    """What the ledger did in an ``ours+ledger`` run: behind, dropping, or writing nothing."""
    behind = r["ledger_pending"]
    print(
        f"   ledger at the end of the measurement: {behind:,} pending "
        f"({behind / runners:.1f} s of fires), {r['ledger_dropped']:,} dropped"
        + ("  << the writer falls behind" if behind > runners else "")
    )
    rows, started = r["ledger_rows"], r["runs_started"]
    complete = rows == started > 0
    print(
        f"   ledger after close: {rows:,} of {started:,} runs in the file "
        f"({r['ledger_written']:,} written, {r['ledger_left']:,} left unwritten, "
        f"{r['ledger_dropped_total']:,} dropped, {r['ledger_failures']} failed writes): "
        + ("complete" if complete else "INCOMPLETE")
    )


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


THROUGHPUT_ROUNDS = 3
LEDGER_COST = 0.10
"""The ledger may cost at most this share of the throughput."""


def throughput() -> None:
    print("\n2. Pipeline throughput: CompositePipe of 3 templated ExpressionPipe steps")
    print(
        f"   run ledger off and on (SQLite in a temporary directory), {THROUGHPUT_ROUNDS} "
        "rounds alternated, best round shown"
    )
    rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(THROUGHPUT_ROUNDS):
        for mode, done in rounds.items():
            done.append(run_child("throughput", mode))
    best = {mode: max(done, key=lambda r: r["per_second"]) for mode, done in rounds.items()}
    print(
        f"   {'ledger':8} {'exec/s':>8} {'rounds':>22} {'loop CPU us/exec':>17} "
        f"{'writer CPU us/exec':>19}"
    )
    for mode, r in best.items():
        each = " ".join(f"{x['per_second']:,.0f}" for x in rounds[mode])
        print(
            f"   {mode:8} {r['per_second']:8,.0f} {each:>22} {r['loop_cpu_us']:17.1f} "
            f"{r['writer_cpu_us']:19.1f}"
        )
    off, on = best["off"], best["on"]
    for target in (5_000, 20_000):
        print(
            f"   ledger off: {off['per_second']:,.0f} executions/s; target {target:,}/s: "
            f"{_ratio(off['per_second'], target)} "
            f"({'met' if off['per_second'] >= target else 'MISSED'})"
        )
    recorded = all(
        r["rows"] == r["runs"] and not r["dropped"] and not r["failures"] for r in rounds["on"]
    )
    print(
        "   ledger on, per round: runs in the file / runs fired, pending at the end of the "
        "measurement, close() time"
    )
    print(
        "   "
        + "; ".join(
            f"{r['rows']:,}/{r['runs']:,}, {r['pending_at_end']:,} pending, {r['close_s']:.3f} s"
            + (f", {r['dropped']} dropped" if r["dropped"] else "")
            + (f", {r['failures']} failed writes" if r["failures"] else "")
            for r in rounds["on"]
        )
    )
    ratio = on["per_second"] / off["per_second"]
    cpu = (on["loop_cpu_us"] + on["writer_cpu_us"]) / off["loop_cpu_us"]
    ok = ratio >= 1 - LEDGER_COST and recorded
    print(
        f"   ledger on/off: throughput {ratio:.2f}x, CPU per execution {cpu:.2f}x; target the "
        f"ledger costs <= {LEDGER_COST:.0%} of throughput (on/off >= {1 - LEDGER_COST:.2f}x): "
        + ("met" if ok else "MISSED")
        + ("" if recorded else " (the ledger did not record every run)")
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
    ok = ours["seconds"] <= 0.5 and ours["rss_mb"] <= 30
    print(f"   target <= 0.5 s and <= 30 MB: {'met' if ok else 'MISSED'}")


EMBEDDED_RATE = 1_000
"""Tickets per second the route runner must reach on the embedded helpdesk."""
BATCH_LATENCY_MS = 0.3
"""Milliseconds per ticket scikit-learn may take in a batch of 50."""
RT_FLOOR_SHARE = 0.5
"""On Request Tracker the route runner must reach at least this share of RT's floor."""


def tickets() -> None:
    print("\n4. Ticket automation: the route runner of examples/ticket-routing.yml")
    print("   (fetch, classify queue and priority, note, update) over 200 waiting tickets")
    r = run_child("tickets", timeout=1200)
    embedded = r["embedded_per_s"]
    print(
        f"   embedded helpdesk (SQLite)   {embedded:8.1f} tickets/s   target >= "
        f"{EMBEDDED_RATE:,}: " + ("met" if embedded >= EMBEDDED_RATE else "MISSED")
    )
    rt = r["rt"]
    if isinstance(rt, dict):
        ours, floor, conc = rt["ours_per_s"], rt["floor_per_s"], rt["concurrency"]
        print(f"   Request Tracker 5 (REST2), {rt['tickets']} tickets, best round of each:")
        print(
            f"   ours, {conc} at a time          {ours:8.1f} tickets/s   "
            f"({_ratio(ours, r['embedded_per_s'])} of embedded)"
        )
        print(f"   ours, one at a time          {rt['ours_1_per_s']:8.1f} tickets/s")
        ms = rt["floor_ms"]
        print(
            f"   RT's floor                   {floor:8.1f} tickets/s   (per routed ticket: "
            f"1/{rt['tickets']} search {ms['search_ms']:.1f} ms, note {ms['note_ms']:.1f} ms, "
            f"update {ms['update_ms']:.1f} ms)"
        )
        print(
            "   floor: the calls a routed ticket needs (its share of one search, one comment, "
            "one PUT),"
        )
        print("   made directly with httpx against the same RT, one after another, each timed")
        print(
            f"   REST calls per routed ticket: ours {rt['ours_calls_per_ticket']:.2f}, "
            f"floor {rt['floor_calls_per_ticket']:.2f}"
        )
        each = ", ".join(
            f"{o:.1f}/{one:.1f}/{f:.1f}"
            for o, one, f in zip(
                rt["ours_rounds"], rt["ours_1_rounds"], rt["floor_rounds"], strict=True
            )
        )
        print(f"   rounds (ours/one at a time/floor, back to back, order rotated): {each}")
        share = rt["ratio"]
        print(
            f"   ours vs RT's floor: {share:.2f}x (the rounds' median; best vs best "
            f"{_ratio(ours, floor).strip()}; one at a time {rt['ratio_1']:.2f}x); "
            f"target >= {RT_FLOOR_SHARE:g}x of RT's floor: "
            + ("met" if share >= RT_FLOOR_SHARE else "MISSED")
        )
    else:
        print(f"   Request Tracker 5 (REST2)    {rt}")
    print("   classification latency per ticket (one ticket per call):")
    sk = r["sklearn_ms"]
    print(f"   scikit-learn (TF-IDF + logistic regression)   {sk:7.2f} ms")
    batch = r["sklearn_batch_ms"]
    print(
        f"   scikit-learn, in batches of 50                {batch:7.3f} ms   target <= "
        f"{BATCH_LATENCY_MS:g} ms: " + ("met" if batch <= BATCH_LATENCY_MS else "MISSED")
    )
    tf = r["transformers_ms"]
    if isinstance(tf, int | float):
        print(f"   transformers (tiny 2-layer BERT, CPU)         {tf:7.2f} ms   ({_ratio(tf, sk)})")
    else:
        print(f"   transformers: {tf}")


WEBHOOK_FLOOR_SHARE = 0.6
"""Ours must serve at least this share of the floor's webhooks per second."""
WEBHOOK_RATE = 2_400
"""Webhooks per second of the earlier hand-written listener, which ours must keep."""


def webhook() -> None:
    from bench.webhook import ContenderError, run_driver

    quick = "--quick" in sys.argv
    seconds, rounds = (2.0, 1) if quick else (5.0, 3)
    print("\n5. Webhooks: HMAC-signed JSON to a WebhookTrigger of `otai run`, on loopback")
    print("   floor: a bare ASGI callable on uvicorn.Server (uvicorn's own protocol, which the")
    print("   listener's builds on, with TCP_NODELAY; no Starlette) that reads the body, checks")
    print("   the same HMAC-SHA256 and answers 202")
    print("   same clients and request bytes; each contender in its own process")
    print(
        f"   {seconds:g} s measured after a warm-up"
        + (f", {rounds} rounds alternated, best round shown" if rounds > 1 else "")
    )
    for connections in (1, 8):
        done: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
        try:
            for _ in range(rounds):
                for name, results in done.items():
                    results.append(run_driver(name, connections, seconds))
        except ContenderError as exc:
            raise SystemExit(f"\nbench webhook: {exc}") from None
        best = {name: max(rs, key=lambda r: r["per_second"]) for name, rs in done.items()}
        floor = best["floor"]
        print(f"\n   {connections} connection(s)")
        print(
            f"   {'':8} {'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'accepted':>9} "
            f"{'refused':>8} {'vs floor':>9} {'CPU us/req':>11}"
            + (f" {'rounds':>20}" if rounds > 1 else "")
        )
        for name, r in best.items():
            each = " ".join(f"{x['per_second']:,.0f}" for x in done[name])
            cpu = r.get("cpu_us_per_request")
            print(
                f"   {name:8} {r['per_second']:10,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                f"{r['accepted']:9d} {r['refused']:8d} "
                f"{_ratio(r['per_second'], floor['per_second']):>9} "
                f"{(f'{cpu:.1f}' if cpu is not None else 'n/a'):>11}"
                + (f" {each:>20}" if rounds > 1 else "")
            )
        ours = best["ours"]["per_second"]
        share = ours / floor["per_second"]
        print(
            f"   ours: target >= {WEBHOOK_FLOOR_SHARE:g}x floor requests/s: "
            f"{'met' if share >= WEBHOOK_FLOOR_SHARE else 'MISSED'} ({share:.2f}x); "
            f"target >= {WEBHOOK_RATE:,} requests/s: "
            f"{'met' if ours >= WEBHOOK_RATE else 'MISSED'} ({ours:,.0f})"
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
