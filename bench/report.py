"""Writes the measured part of ``BENCHMARKS.md``.

Only the text between ``<!-- bench/run.py: results begin -->`` and ``<!-- bench/run.py: results
end -->`` is ours to replace; everything else in the file (the method, the analysis, and the P3
section that ``bench/history.py`` writes) is kept exactly as it is. A file without the markers
gets them appended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import median

__all__ = ["BEGIN", "END", "render", "write"]

BEGIN = "<!-- bench/run.py: results begin -->"
END = "<!-- bench/run.py: results end -->"

_SKELETON = f"""# Benchmarks

Run with `nox -s bench` (about eight minutes on a 2-core machine; `nox -s bench -- --quick` is a
smoke run of a minute or two whose figures are not measurements).

{BEGIN}
{END}
"""


POLL_FIRST_MS = 1000.0
"""The Runware engine's wait before its first getResponse poll (adapters/runware/transport.py)."""


def write(path: Path, results: dict[str, Any]) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else _SKELETON
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{render(results)}\n{END}{tail}", encoding="utf-8")


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _spread(values: list[float], unit: str = "", digits: int = 1) -> str:
    """``median (min-max)`` of a list of figures."""
    return f"{median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    machine = results.get("machine", {})
    quick = results.get("quick")
    lines.append("## Machine and run")
    lines.append("")
    if quick:
        lines.append("**This was a `--quick` smoke run: too few rounds to be a measurement.**")
        lines.append("")
    lines.append("| | |")
    lines.append("| --- | --- |")
    for key in (
        "date",
        "load",
        "cpu",
        "cores",
        "memory",
        "os",
        "python",
        "sqlite",
        "postgresql",
        "litestar",
        "uvicorn",
        "numpy",
        "pillow",
    ):
        if key in machine:
            lines.append(f"| {key} | {machine[key]} |")
    lines.append(f"| rounds per figure | {results.get('rounds')} (each figure is the median over them) |")
    if "elapsed_s" in results:
        lines.append(f"| runner time | {results['elapsed_s']:.0f} s (without installing) |")
    lines.append("")
    lines.append("## Results against the targets")
    lines.append("")
    lines.append("Medians over the rounds; in brackets the lowest and highest round.")
    lines.append("")
    lines.append("| id | scenario | measured | side by side | target | verdict |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    lines.extend(_rows(results))
    lines.append("")
    lines.extend(_details(results))
    return "\n".join(lines).rstrip("\n")


def _rows(results: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    for name in ("P1", "P2", "P3", "P4", "P5", "P7", "P8", "P9", "P10", "cold", "suite"):
        if "error" in results.get(name, {}):
            rows.append(f"| {name} | failed in this run | {results[name]['error']} | | | **not measured** |")
    results = {k: v for k, v in results.items() if not (isinstance(v, dict) and "error" in v)}
    p1 = results.get("P1")
    if p1:
        latency = p1["latency"]
        for level, figures in p1["levels"].items():
            wall = median(figures["wall_s"])
            ratio = wall / latency
            direct = median(figures["direct_s"]) / latency
            rows.append(
                f"| P1 | {level} concurrent text-to-image {p1['size']}, provider latency {latency:g} s "
                f"| {_spread(figures['wall_s'], ' s', 2)} = **{ratio:.2f}x** the latency "
                f"| the same burst straight to the fake provider: {direct:.2f}x "
                f"| at most 1.25x | {_verdict(ratio <= 1.25)} |"
            )
    p2 = results.get("P2")
    if p2:
        rounds = p2["rounds"]
        own = median([r["own_by_log_p50"] for r in rounds])
        strict = median([r["own_by_fake_p50"] for r in rounds])
        calls = median([r.get("calls_per_generation", 1.0) for r in rounds])
        polls = max(0.0, calls - 1)
        # async delivery waits POLL_FIRST before the first getResponse (Runware's clients' cadence);
        # the server's own work is what is left once that deliberate wait is taken out
        wait = POLL_FIRST_MS if polls else 0.0
        rows.append(
            "| P2 | one text-to-image at a time, latency 0, 1024x1024 JPEG "
            f"| server's own time p50 **{_ms(own - wait)}** besides the {_ms(wait)} wait before the first"
            f" poll (p90 {_ms(median([r['own_by_log_p90'] for r in rounds]) - wait)}) "
            f"| total p50 {_ms(median([r['total_p50'] for r in rounds]))}; {calls:.1f} Runware calls a"
            f" generation (submit + {polls:.1f} poll); provider and download "
            f"{_ms(median([r['provider_p50'] for r in rounds]))}; counting the HTTP client too: "
            f"{_ms(strict - wait)} | p50 under 10 ms | {_verdict(own - wait < 10)} |"
        )
    p3 = results.get("P3")
    if p3:
        note = "see the P3 section below (written by `bench/history.py`)"
        if not p3.get("ran"):
            note = f"not run: {p3.get('why')}"
        elif p3.get("exit"):
            note = f"`bench/history.py` exited with {p3['exit']}; see the P3 section below"
        rows.append(
            f"| P3 | history on 1,000,000 rows, SQLite and PostgreSQL | {note} | | "
            "first and cursor page p50 under 5 ms, `q` under 20 ms | see P3 |"
        )
    p4 = results.get("P4")
    if p4:
        rps = p4["rps"]
        for name, label in (
            ("health", "`GET /health`"),
            ("history", f"`GET /api/history?limit=50` ({p4['history_items']} items)"),
        ):
            ratios = [a / b for a, b in zip(rps[name], rps["hello"], strict=True)]
            ratio = median(ratios)
            rows.append(
                f"| P4 | requests/second of {label}, one worker "
                f"| {_spread(rps[name], '', 0)} req/s = **{ratio:.2f}x** "
                f"| bare Litestar hello world: {_spread(rps['hello'], '', 0)} req/s "
                f"| at least 0.8x | {_verdict(ratio >= 0.8)} |"
            )
    p5 = results.get("P5")
    if p5:
        targets = {"512": 50.0, "1024": 150.0, "upscale": 150.0}
        labels = {
            "512": "local engine 512x512, 25 steps",
            "1024": "local engine 1024x1024, 25 steps",
            "upscale": "local 2x upscale of 1024x1024",
        }
        for key, target in targets.items():
            server = median(p5["server_ms"][key])
            engine = median(p5["engine_ms"][key])
            rows.append(
                f"| P5 | {labels[key]} | request through the server **{_ms(server)}** "
                f"| the engine alone, in process: {_ms(engine)} | under {target:.0f} ms "
                f"| {_verdict(server < target)} |"
            )
    if p1 and "64" in p1["levels"]:
        peaks = p1["levels"]["64"]["peak_rss_mb"]
        peak = median(peaks)
        rows.append(
            f"| P6 | peak RSS of the server during P1 at 64 concurrent 1024x1024 "
            f"| **{peak:.0f} MB** ({min(peaks):.0f}-{max(peaks):.0f}) "
            f"| idle after warm-up: {p1['rss_idle_mb']:.0f} MB | under 250 MB | {_verdict(peak < 250)} |"
        )
    p7 = results.get("P7")
    if p7:
        rounds = p7["rounds"]
        own = median([r["own_ms"] for r in rounds])
        growth = median([r["rss_growth_mb"] for r in rounds])
        rows.append(
            f"| P7 | image-to-image with a {p7['body_mb']:.1f} MB data-URI body ({p7['image']}) "
            f"| server's own time **{_ms(own)}** | total {_ms(median([r['total_ms'] for r in rounds]))}, "
            f"provider {_ms(median([r['provider_ms'] for r in rounds]))} | under 300 ms "
            f"| {_verdict(own < 300)} |"
        )
        rows.append(
            f"| P7 | the same, memory | peak RSS growth **{growth:.0f} MB** "
            f"| RSS before the request: {median([r['rss_before_mb'] for r in rounds]):.0f} MB "
            f"| under 150 MB | {_verdict(growth < 150)} |"
        )
    rows.extend(_p8_rows(results.get("P8")))
    rows.extend(_p9_rows(results.get("P9")))
    rows.extend(_p10_rows(results.get("P10")))
    cold = results.get("cold")
    if cold:
        rows.append(
            "| - | cold start of `imagestudio serve` to a healthy `/health` "
            f"| {_spread(cold['seconds'], ' s', 2)} | | no target | |"
        )
    suite = results.get("suite")
    if suite:
        rows.append(
            f"| - | the test suite, `python -m pytest -q` (run once, {suite.get('measured', '?')}) "
            f"| {suite['seconds']:.0f} s | {suite['summary']} | no target | |"
        )
    return rows


def _statuses(figures: dict[str, Any]) -> str:
    return ", ".join(f"{count}x {status}" for status, count in sorted(figures["statuses"].items()))


def _killed(figures: dict[str, Any]) -> str:
    return " (**killed at the RSS ceiling**)" if figures.get("killed") else ""


def _health(figures: dict[str, Any]) -> str:
    if "p50_ms" not in figures:
        return f"no answer ({figures['failures']})"
    failed = sum(figures["failures"].values())
    shown = f"p50 {_ms(figures['p50_ms'])}, p99 {_ms(figures['p99_ms'])}"
    return shown + (f", {failed} of {figures['probes']} failed" if failed else "")


def _p8_rows(p8: dict[str, Any] | None) -> list[str]:
    """P8, the attacks of issue 12 (``bench/attacks.py``): one round each, no fixed target."""
    if not p8:
        return []
    rows = []
    queued = p8["queued"]
    rows.append(
        f"| P8 | {queued['requests']} image-to-image at once, {queued['body_mb']:.0f} MiB data URI each "
        f"| peak RSS **{queued['peak_mb']:.0f} MB**{_killed(queued)}, {queued['after_mb']:.0f} MB after "
        f"they drained | idle {queued['idle_mb']:.0f} MB; {_statuses(queued)} in {queued['wall_s']:.0f} s "
        "| bounded by the queued-bytes limit | |"
    )
    pixels = p8["pixels"]
    rows.append(
        f"| P8 | image-to-image of a {pixels['png_kb']:.0f} KB PNG declaring {pixels['declared']} px, "
        f"{pixels['requests']} requests, {pixels['parallel']} at a time "
        f"| peak RSS **{pixels['peak_mb']:.0f} MB**{_killed(pixels)}, {pixels['after_mb']:.0f} MB after "
        f"| idle {pixels['idle_mb']:.0f} MB; {_statuses(pixels)} | bounded by the pixel limit | |"
    )
    for key, label in (
        ("bodies", "while 4 clients upload 32 MiB JSON bodies"),
        ("slow", "while 1,000 connections send headers a byte every 3 s"),
    ):
        load = p8[key]
        alive = "" if load["server_alive"] else "; **the server died**"
        rows.append(
            f"| P8 | `GET /health` on fresh connections {label} ({load['seconds']:g} s) "
            f"| **{_health(load['during'])}**{alive} | alone: {_health(load['alone'])}; "
            f"peak RSS {load['peak_mb']:.0f} MB{_killed(load)} | /health keeps answering | |"
        )
    return rows


def _p9_rows(p9: dict[str, Any] | None) -> list[str]:
    """P9, a gallery page (``bench/gallery.py``): thumbnails against full images, no fixed target."""
    if not p9:
        return []
    rounds = p9["rounds"]

    def figure(name: str) -> tuple[float, float]:
        return median([r[f"{name}_s"] * 1000 for r in rounds]), median([r[f"{name}_bytes"] for r in rounds])

    thumbs_ms, thumbs_bytes = figure("thumbnails")
    full_ms, full_bytes = figure("full")
    on_demand_ms, _ = figure("on_demand")
    page_ms, page_bytes = figure("page")
    return [
        f"| P9 | a gallery page: `GET /api/history?limit={p9['images']}` and its {p9['images']} thumbnails "
        f"({p9['size']} JPEGs, {p9['connections']} keep-alive connections) "
        f"| **{thumbs_ms:.0f} ms, {thumbs_bytes / 1024:.0f} KiB** "
        f"| the same page with the full images: {full_ms:.0f} ms, {full_bytes / 1024:.0f} KiB "
        f"(thumbnails: {full_ms / thumbs_ms:.1f}x faster, {full_bytes / thumbs_bytes:.0f}x fewer bytes); "
        f"the page alone: {page_ms:.0f} ms, {page_bytes / 1024:.0f} KiB; "
        f"first view of a history from before thumbnails (each made on request): {on_demand_ms:.0f} ms "
        "| no target | |",
        f"| P9 | making one thumbnail of a {p9['size']} JPEG (in process: what a generation spends on it) "
        f"| **{_spread(p9['make_ms'], ' ms')}** | | no target | |",
    ]


def _codes(statuses: dict[str, int]) -> str:
    return ", ".join(f"{count}x {status}" for status, count in sorted(statuses.items()))


def _summed(bursts: list[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for burst in bursts:
        for status, count in burst["statuses"].items():
            total[status] = total.get(status, 0) + count
    return total


def _cpu_ms(cpu: dict[str, float], count: int) -> str:
    """CPU milliseconds a generation, by process: the API servers and the workers each together."""
    api = sum(v for k, v in cpu.items() if k.startswith("api"))
    workers = sum(v for k, v in cpu.items() if k.startswith("worker"))
    total = api + workers + cpu.get("postgres", 0.0) + cpu.get("fake", 0.0)
    return (
        f"{total * 1000 / count:.0f} ms: API servers {api * 1000 / count:.0f}, workers "
        f"{workers * 1000 / count:.0f}, PostgreSQL {cpu.get('postgres', 0.0) * 1000 / count:.0f}, "
        f"the fake {cpu.get('fake', 0.0) * 1000 / count:.0f}"
    )


def _latency(figures: dict[str, float]) -> str:
    return f"p50 {figures['p50_ms']:.1f}, p99 {figures['p99_ms']:.1f}, max {figures['max_ms']:.1f} ms"


def _p10_rows(p10: dict[str, Any] | None) -> list[str]:
    """P10, a team on PostgreSQL (``bench/team.py``): two API servers, one or two workers."""
    if not p10:
        return []
    latency = p10["latency"]
    rows = []
    for level, figures in p10["levels"].items():
        direct = median(figures["direct_s"]) / latency
        single = median([b["wall_s"] for b in figures["single"]]) / latency
        for workers in ("1", "2"):
            bursts = figures[workers]
            walls = [b["wall_s"] for b in bursts]
            rows.append(
                f"| P10 | {level} concurrent synchronous text-to-image {p10['size']} through two API servers,"
                " "
                f"{workers} worker{'s' if workers == '2' else ''}, provider latency {latency:g} s "
                f"| {_spread(walls, ' s', 2)} = **{median(walls) / latency:.2f}x** the latency; "
                f"{_codes(_summed(bursts))} "
                f"| straight to the fake: {direct:.2f}x; one `imagestudio serve` on SQLite: {single:.2f}x "
                f"({_codes(_summed(figures['single']))}) | no target | |"
            )
    drains = [p10[key] for key in ("drain_1", "drain_2") if p10.get(key)]
    if drains:
        admissions = [drain["admission"] for drain in drains]
        count = sum(admissions[0]["statuses"].values())
        walls = " and ".join(f"{a['wall_s']:.2f} s" for a in admissions)
        rates = " and ".join(f"{count / a['wall_s']:.0f}" for a in admissions)
        none = {"share_waited": 0.0, "mean_waiting": 0.0}
        waits = [a["lock_waits"].get("admission", none) for a in admissions]
        rows.append(
            f"| P10 | admission alone: {count} submissions (`Prefer: respond-async`) at once through two "
            f"API servers, no worker running (twice) | **{walls}** to the last answer ({rates} a second); "
            f"{_codes(_summed(admissions))} | some backend waited for the cluster's admission lock in "
            + " and ".join(f"{w['share_waited']:.0%}" for w in waits)
            + " of the samples ("
            + " and ".join(f"{w['mean_waiting']:.1f}" for w in waits)
            + " waiting on average) | no target | |"
        )
    for drain in drains:
        timeline = drain["timeline"]
        starts = timeline["last_start_s"] - timeline["first_start_s"]
        rows.append(
            f"| P10 | that full queue of {timeline['tasks']} run by {drain['workers']} worker"
            f"{'s started together' if drain['workers'] > 1 else ''} "
            f"| **{drain['drain_s']:.2f} s** from the first start to the last end "
            f"| starts spread over {starts:.2f} s ({timeline['tasks'] / max(starts, 1e-9):.0f} a second); "
            f"a task ran {timeline['run_p50_s']:.2f} s (p50); CPU a generation "
            f"{_cpu_ms(drain['cpu_s'], timeline['tasks'])} | no target | |"
        )
    big = p10["levels"].get("256")
    if big:
        for workers in ("1", "2"):
            bursts = big[workers]
            middle = sorted(bursts, key=lambda b: b["wall_s"])[(len(bursts) - 1) // 2]
            count = sum(middle["statuses"].values())
            waits = middle["lock_waits"].get("admission", {"share_waited": 0.0})
            single = sorted(big["single"], key=lambda b: b["wall_s"])[(len(big["single"]) - 1) // 2]
            rows.append(
                f"| P10 | where the time of the median 256 burst with {workers} worker"
                f"{'s' if workers == '2' else ''} went "
                f"| CPU a generation **{_cpu_ms(middle['cpu_s'], count)}** "
                f"| last task started at {middle['timeline']['last_start_s']:.1f} s of "
                f"{middle['wall_s']:.1f} s, tasks ran {middle['timeline']['run_p50_s']:.2f} s (p50); "
                f"the admission lock had a waiter in {waits['share_waited']:.0%} of the samples; "
                f"one `serve` on SQLite: {single['cpu_s'] * 1000 / count:.0f} ms a generation | no target | |"
            )
    events = p10.get("events")
    if events:
        rows.append(
            f"| P10 | event latency between servers: {events['tasks']} tasks submitted on A, sockets on A "
            f"and B on every task, {min(events['events_a'], events['events_b'])} events "
            f"| arrival on B minus arrival on A: **{_latency(events['b_minus_a'])}** "
            f"(absolute: {_latency(events['b_minus_a_abs'])}) "
            f"| from publication to arrival: on A {_latency(events['published_to_a'])}, on B "
            f"{_latency(events['published_to_b'])} | no target | |"
        )
        rows.append(
            f"| P10 | a task's completion (published by a worker) to its arrival on the servers, "
            f"{events['completed_to_b']['count']} tasks "
            f"| on B **{_latency(events['completed_to_b'])}** | on A {_latency(events['completed_to_a'])}; "
            f"B minus A {_latency(events['completed_b_minus_a'])} | no target | |"
        )
    return rows


def _details(results: dict[str, Any]) -> list[str]:
    lines = ["### Every round", ""]
    results = {k: v for k, v in results.items() if not (isinstance(v, dict) and "error" in v)}
    p1 = results.get("P1")
    if p1:
        for level, figures in p1["levels"].items():
            walls = ", ".join(f"{w:.2f}" for w in figures["wall_s"])
            directs = ", ".join(f"{w:.2f}" for w in figures["direct_s"])
            peaks = ", ".join(f"{p:.0f}" for p in figures["peak_rss_mb"])
            lines.append(
                f"- P1/P6 at {level}: wall {walls} s; straight to the fake {directs} s; peak RSS {peaks} MB; "
                f"statuses {figures['statuses']}"
            )
    p2 = results.get("P2")
    if p2:
        for key in ("own_by_log_p50", "own_by_fake_p50", "total_p50"):
            values = ", ".join(f"{r[key]:.1f}" for r in p2["rounds"])
            lines.append(f"- P2 {key} ({p2['requests_per_round']} requests a round): {values} ms")
    p4 = results.get("P4")
    if p4:
        for name, values in p4["rps"].items():
            lines.append(f"- P4 {name}: {', '.join(f'{v:.0f}' for v in values)} req/s")
        lines.append(
            f"- P4 setup: {p4['connections']} keep-alive connections, {p4['seconds']:g} s a round after a "
            f"warm-up; server and load generator pinned to separate CPUs: {p4['pinned']}; "
            f"errors {p4['errors']}"
        )
    p5 = results.get("P5")
    if p5:
        for where in ("server_ms", "engine_ms"):
            for key, values in p5[where].items():
                lines.append(f"- P5 {where} {key}: {', '.join(f'{v:.1f}' for v in values)} ms")
    p7 = results.get("P7")
    if p7:
        for key in ("own_ms", "total_ms", "provider_ms", "rss_growth_mb"):
            lines.append(f"- P7 {key}: {', '.join(f'{r[key]:.1f}' for r in p7['rounds'])}")
    p8 = results.get("P8")
    if p8:
        for key in ("bodies", "slow"):
            load = p8[key]
            lines.append(f"- P8 {key}: the attacker's counts {json.dumps(load['attacker'])}")
    p9 = results.get("P9")
    if p9:
        for key in ("thumbnails", "full", "on_demand", "page"):
            times = ", ".join(f"{r[key + '_s'] * 1000:.0f}" for r in p9["rounds"])
            sizes = ", ".join(f"{r[key + '_bytes'] / 1024:.0f}" for r in p9["rounds"])
            lines.append(f"- P9 {key}: {times} ms; {sizes} KiB")
        lines.append(f"- P9 make_ms: {', '.join(f'{v:.1f}' for v in p9['make_ms'])} ms")
    p10 = results.get("P10")
    if p10:
        for level, figures in p10["levels"].items():
            direct = ", ".join(f"{w:.2f}" for w in figures["direct_s"])
            single = ", ".join(f"{b['wall_s']:.2f}" for b in figures["single"])
            team = "; ".join(
                f"{workers} worker(s) " + ", ".join(f"{b['wall_s']:.2f}" for b in figures[workers])
                for workers in ("1", "2")
            )
            lines.append(
                f"- P10 at {level}: {team} s; one serve on SQLite {single} s; straight to the fake {direct} s"
            )
        during = [b["load"] for f in p10["levels"].values() for w in ("1", "2") for b in f[w] if "load" in b]
        load = f"{p10['load_before']} before, {p10.get('load_after')} after"
        if during:
            load += f", {min(during):.1f}-{max(during):.1f} after the team's bursts"
        lines.append(f"- P10 load average (1 min): {load}")
    cold = results.get("cold")
    if cold:
        lines.append(f"- cold start: {', '.join(f'{s:.2f}' for s in cold['seconds'])} s")
    return lines
