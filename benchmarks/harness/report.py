"""From raw results to the summary, the markdown table, the targets and the plot.

Medians are over the kept repetitions of one run; spread is min-max.  A
ratio divides two medians measured in the same run; its spread is the
min-max of the per-repetition ratios (each repetition loads every peer once,
back to back).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from .http_peers import GRANIAN, MUX_FLOOR, STARMAN
from .peers import ALL, FLOOR, GROWTH_FROM, GROWTH_SPARES, GROWTH_TO, PERL
from .workloads import WORKLOADS

THROUGHPUT = ("1", "2", "3")
HTTP_WORKLOADS = {key: cls for key, cls in WORKLOADS.items() if cls.protocol == "http"}
HTTP = tuple(HTTP_WORKLOADS)
#: (row key, reference peer, column heading) of the HTTP tables' ratios.
HTTP_REFERENCES = (("vs_granian", GRANIAN, "x granian"), ("vs_mux_floor", MUX_FLOOR, "x epoll floor"),
                   ("vs_starman", STARMAN, "x Starman"))  # fmt: skip


def label(peer: str) -> str:
    cls = ALL.get(peer)
    return cls.label if cls else peer


def perl_of(peer: str) -> str:
    """The Perl peer a row's "x Perl" divides by: Perl's PreFork for the PreFork rows."""
    cls = ALL.get(peer)
    return cls.perl_peer if cls else PERL


# A row compared with another of netserver's own rows: PreFork against PreForkSimple.
SIBLINGS = {"netserver-prefork": "netserver"}


def _kept(results: list[dict]) -> list[dict]:
    return [r for r in results if not r["discarded"] and "error" not in r["metrics"]]


def _reference_variant(variant: str, workload: str) -> str:
    """The variant of a reference peer that a row is compared with."""
    if workload != "3":
        return "default"
    return variant if variant in ("flock", "semaphore", "pipe") else "flock"


VARIANTS = ("default", "select", "flock", "semaphore", "pipe")
HATCHES = {"semaphore": "//", "pipe": ".."}


def _order(workload: str, workers: int, peer: str, variant: str) -> tuple:
    """Tables and plots list peers in peers.ALL order, whatever order they ran in."""
    names = list(ALL)
    if peer in names:
        rank: float = names.index(peer)
    elif peer.startswith("netserver@"):
        rank = names.index("netserver") - 0.5  # another commit's build sits just before the work tree's
    else:
        rank = len(names)
    return (
        workload,
        workers,
        rank,
        VARIANTS.index(variant) if variant in VARIANTS else len(VARIANTS),
    )


def summarize(results: list[dict]) -> dict:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in _kept(results):
        groups[(r["workload"], r["workers"], r["peer"], r["variant"])].append(r)
    rows = []
    for (wl, n, peer, variant), rs in sorted(groups.items(), key=lambda kv: _order(*kv[0])):
        row = {"workload": wl, "workers": n, "peer": peer, "variant": variant, "reps": len(rs)}
        ms = [r["metrics"] for r in rs]
        if wl in THROUGHPUT:
            rps = [m["rps"] for m in ms]
            row.update(
                rps=statistics.median(rps),
                rps_min=min(rps),
                rps_max=max(rps),
                p50_us=statistics.median(m["latency_us"]["p50"] for m in ms),
                p99_us=statistics.median(m["latency_us"]["p99"] for m in ms),
                max_us=max(m["latency_us"]["max"] for m in ms),
                errors=sum(m["errors"] for m in ms),
                client_cpu_pct=statistics.median(m["client_cpu_pct"] for m in ms),
                server_cpu_pct=_median_of(ms, "server_cpu_pct")[0],
                other_cpu_pct=_median_of(ms, "other_cpu_pct")[0],
                machine_busy_pct=_median_of(ms, "machine_busy_pct")[0],
                per_rep={r["rep"]: r["metrics"]["rps"] for r in rs},
            )
        elif wl in HTTP:
            row.update(_http_row(rs))
        else:
            row.update(_process_row(ms))
        rows.append(row)
    index = {(r["workload"], r["workers"], r["peer"], r["variant"]): r for r in rows}
    for row in rows:
        if row["workload"] not in THROUGHPUT:
            continue
        floor_variant = "select" if row["workload"] == "3" else "default"
        refs = [
            ("vs_floor", (FLOOR, floor_variant)),
            ("vs_perl", (perl_of(row["peer"]), _reference_variant(row["variant"], row["workload"]))),
        ]
        if row["peer"] in SIBLINGS:
            refs.append(("vs_sibling", (SIBLINGS[row["peer"]], row["variant"])))
        for name, ref_key in refs:
            _ratio_to(row, index.get((row["workload"], row["workers"]) + ref_key), name)
    for row in rows:
        if row["workload"] in HTTP:
            for name, ref, _ in HTTP_REFERENCES:
                _ratio_to(row, index.get((row["workload"], row["workers"], ref, "default")), name)
    for row in rows:
        if row["workload"] not in ("4", "5"):
            continue
        floor = index.get(("4", row["workers"], FLOOR, "default"))
        perl = index.get((row["workload"], row["workers"], perl_of(row["peer"]), "default"))
        if floor and row.get("uss_loaded_kib") and floor.get("uss_loaded_kib"):
            row["uss_vs_floor"] = row["uss_loaded_kib"] / floor["uss_loaded_kib"]
        if perl and row.get("startup_ms") and perl.get("startup_ms"):
            row["startup_vs_perl"] = row["startup_ms"] / perl["startup_ms"]
        if perl and row.get("respawn_ms") is not None and perl.get("respawn_ms") is not None:
            row["respawn_minus_perl_ms"] = row["respawn_ms"] - perl["respawn_ms"]
    for row in rows:
        if row["workload"] != "6":
            continue
        perl = index.get(("6", row["workers"], perl_of(row["peer"]), row["variant"]))
        if perl and row.get("growth_ms") and perl.get("growth_ms"):
            row["growth_vs_perl"] = row["growth_ms"] / perl["growth_ms"]
    for row in rows:
        row.pop("per_rep", None)
    other = [r["metrics"]["other_cpu_pct"] for r in _kept(results) if "other_cpu_pct" in r["metrics"]]
    before = [
        r["metrics"]["busy_before_pct"] for r in _kept(results) if r["metrics"].get("busy_before_pct") is not None
    ]
    disturbance = {}
    if other:
        disturbance["other_cpu_pct_median"] = statistics.median(other)
        disturbance["other_cpu_pct_max"] = max(other)
        disturbance["runs_over_10pct"] = sum(1 for o in other if o > 10.0)
        disturbance["runs"] = len(other)
    if before:
        disturbance["busy_before_pct_max"] = max(before)
    return {"rows": rows, "disturbance": disturbance}


def _ratio_to(row: dict, ref: dict | None, name: str) -> None:
    """row[name]: row's median req/s over ref's, with the range of the per-repetition ratios."""
    if ref is None or not ref["rps"]:
        return
    row[name] = row["rps"] / ref["rps"]
    per = [row["per_rep"][k] / ref["per_rep"][k] for k in row["per_rep"] if ref["per_rep"].get(k)]
    if per:
        row[name + "_min"], row[name + "_max"] = min(per), max(per)


def _http_row(rs: list[dict]) -> dict:
    """An HTTP workload's row: req/s, latency, errors by kind, CPU, threads, and h2load's per-client figures."""
    ms = [r["metrics"] for r in rs]
    rps = [m["rps"] for m in ms]
    kinds: dict[str, int] = defaultdict(int)
    for m in ms:
        for kind, count in m.get("errors_by_kind", {}).items():
            kinds[kind] += count
    row = dict(
        rps=statistics.median(rps),
        rps_min=min(rps),
        rps_max=max(rps),
        p50_us=_median_of(ms, "latency_us", "p50")[0],
        p99_us=_median_of(ms, "latency_us", "p99")[0],
        mean_us=_median_of(ms, "latency_us", "mean")[0],
        max_us=_median_of(ms, "latency_us", "max")[2],
        errors=sum(m["errors"] for m in ms),
        requests=sum(m.get("requests", 0) for m in ms),
        errors_by_kind={k: v for k, v in kinds.items() if v},
        client_cpu_pct=_median_of(ms, "client_cpu_pct")[0],
        server_cpu_pct=_median_of(ms, "server_cpu_pct")[0],
        other_cpu_pct=_median_of(ms, "other_cpu_pct")[0],
        machine_busy_pct=_median_of(ms, "machine_busy_pct")[0],
        threads_per_child=max(m.get("threads_per_child", 0) for m in ms),
        per_rep={r["rep"]: r["metrics"]["rps"] for r in rs},
    )
    for key, path in (("fairness", ("fairness",)), ("client_min", ("client_rps", "min")),
                      ("client_mean", ("client_rps", "mean"))):  # fmt: skip
        med, lo, hi = _median_of(ms, *path)
        if med is not None:
            row[key], row[key + "_min"], row[key + "_max"] = med, lo, hi
    return row


def _median_of(ms: list[dict], *path: str):
    values = []
    for m in ms:
        v = m
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(v)
    return (statistics.median(values), min(values), max(values)) if values else (None, None, None)


def _process_row(ms: list[dict]) -> dict:
    row: dict = {}
    for key, path in (
        ("startup_ms", ("startup_ms",)),
        ("startup_p90_ms", ("startup_p90_ms",)),
        ("respawn_ms", ("respawn_ms",)),
        ("hup_idle_ms", ("hup_idle_ms",)),
        ("hup_load_ms", ("hup_load_ms",)),
        ("uss_idle_kib", ("idle", "uss_kib")),
        ("pss_idle_kib", ("idle", "pss_kib")),
        ("uss_loaded_kib", ("loaded", "uss_kib")),
        ("pss_loaded_kib", ("loaded", "pss_kib")),
        ("growth_ms", ("growth_ms",)),
        ("connect_ms", ("connect_ms",)),
        ("children", ("children",)),
    ):
        med, lo, hi = _median_of(ms, *path)
        if med is not None:
            row[key], row[key + "_min"], row[key + "_max"] = med, lo, hi
    if any("hup_load_errors" in m for m in ms):
        row["hup_load_errors"] = sum(m.get("hup_load_errors", 0) for m in ms)
        row["hup_load_requests"] = sum(m.get("hup_load_requests", 0) for m in ms)
    replaced = [m.get("children_replaced_by_load", 0) for m in ms]
    if any(replaced):
        row["children_replaced_by_load"] = max(replaced)
    for key in ("respawn_error", "hup_error"):
        errs = [m[key] for m in ms if key in m]
        if errs:
            row[key] = errs[0]
    return row


def _num(v, fmt="%.0f") -> str:
    return "-" if v is None else fmt % v


def _ratio(row: dict, name: str) -> str:
    if name not in row:
        return "-"
    if name + "_min" in row:
        return "%.2f (%.2f-%.2f)" % (row[name], row[name + "_min"], row[name + "_max"])
    return "%.2f" % row[name]


def _spread(row: dict, key: str, fmt: str) -> str:
    if row.get(key) is None:
        return "-"
    return (fmt + " (" + fmt + "-" + fmt + ")") % (row[key], row[key + "_min"], row[key + "_max"])


TITLES = {
    "1": "Workload 1: line echo, one request per connection, 50 clients",
    "2": "Workload 2: line echo on persistent connections, clients = N",
    "3": "Workload 3: line echo with two listeners, one request per connection, 50 clients",
    "4": "Workload 4: process figures",
    "5": "Workload 5: INET, per-connection start-up under systemd-socket-activate --inetd -a",
    "6": "Workload 6: PreFork growth, from %d children to %d held connections served" % (GROWTH_FROM, GROWTH_TO),
    **{key: "Workload %s: %s" % (key, cls.title) for key, cls in HTTP_WORKLOADS.items()},
}


def markdown(summary: dict, meta: dict, notes: list[str], targets: list[dict], first: list[str] | None = None) -> str:
    """The run's tables; ``first`` (lines, such as the A/B section) goes before the workload tables."""
    out = [
        "# netserver benchmark %s" % meta["timestamp"],
        "",
        "%s; %s run, %s kept repeats, %.0f s per run%s; medians with (min-max) spread; ratios within this run."
        % (
            meta["machine"],
            meta["mode"],
            meta["repeat"],
            meta["duration_s"],
            " (workload 2: longer, first run discarded)" if "2" in meta.get("workloads", []) else "",
        ),
        "",
        "Versions: "
        + ", ".join("%s %s" % kv for kv in meta.get("versions", {}).items() if kv[1])
        + "; machine %.0f%% busy before the run; took %.0f s." % (meta.get("busy_before_pct", 0), meta["elapsed_s"]),
        "",
    ]
    dist = summary.get("disturbance", {})
    if dist.get("runs"):
        out += [
            "Other work on the machine during the load runs (CPU of processes outside the suite, %% of one "
            "core): median %.0f%%, max %.0f%%; %d of %d runs above 10%%."
            % (dist["other_cpu_pct_median"], dist["other_cpu_pct_max"], dist["runs_over_10pct"], dist["runs"]),
            "",
        ]
    out += first or []
    rows = summary["rows"]
    for wl in ("1", "2", "3"):
        wrows = [r for r in rows if r["workload"] == wl]
        if not wrows:
            continue
        out += [
            "## " + TITLES[wl],
            "",
            "| server | N | serialize | req/s | p50 us | p99 us | max us | errors | x Python floor | x Perl "
            "| CPU: client / server / other, % of a core; machine, % of all |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        siblings = [r for r in wrows if "vs_sibling" in r]
        for r in wrows:
            out.append(
                "| %s | %d | %s | %s | %s | %s | %s | %d | %s | %s | %s |"
                % (
                    label(r["peer"]),
                    r["workers"],
                    r["variant"],
                    _spread(r, "rps", "%.0f"),
                    _num(r["p50_us"]),
                    _num(r["p99_us"]),
                    _num(r["max_us"]),
                    r["errors"],
                    _ratio(r, "vs_floor"),
                    _ratio(r, "vs_perl"),
                    "%s / %s / %s / %s"
                    % (
                        _num(r["client_cpu_pct"]),
                        _num(r["server_cpu_pct"]),
                        _num(r.get("other_cpu_pct")),
                        _num(r["machine_busy_pct"]),
                    ),
                )
            )
        out.append("")
        if any(perl_of(r["peer"]) != PERL for r in wrows):
            out += ["x Perl divides by Perl of the same process model: Perl PreFork for the PreFork rows, "
                    "Perl PreForkSimple for the others. The PreFork rows run with the pool pinned "
                    "(min_servers = max_servers = N).", ""]
        for r in siblings:
            out += ["%s N=%d %s: %s x %s." % (label(r["peer"]), r["workers"], r["variant"], _ratio(r, "vs_sibling"),
                                               label(SIBLINGS[r["peer"]]))]
        if siblings:
            out.append("")
    out += growth_section([r for r in rows if r["workload"] == "6"])
    wrows = [r for r in rows if r["workload"] == "4"]
    if wrows:
        out += [
            "## " + TITLES["4"],
            "",
            "| server | N | start-up ms | USS idle KiB | PSS idle KiB | USS after load KiB | PSS after load KiB "
            "| respawn ms | HUP ms idle | HUP ms under load | HUP failed requests |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in wrows:
            hup_err = "-" if "hup_load_errors" not in r else "%d of %d" % (r["hup_load_errors"], r["hup_load_requests"])
            respawn = _spread(r, "respawn_ms", "%.2f")
            if respawn == "-" and r.get("respawn_error"):
                respawn = "failed"
            out.append(
                "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                % (
                    label(r["peer"]),
                    r["workers"],
                    _spread(r, "startup_ms", "%.1f"),
                    _num(r.get("uss_idle_kib")),
                    _num(r.get("pss_idle_kib")),
                    _num(r.get("uss_loaded_kib"))
                    + (" (%d new)" % r["children_replaced_by_load"] if r.get("children_replaced_by_load") else ""),
                    _num(r.get("pss_loaded_kib")),
                    respawn,
                    _spread(r, "hup_idle_ms", "%.1f"),
                    _spread(r, "hup_load_ms", "%.1f"),
                    hup_err,
                )
            )
        out.append("")
    inet = [r for r in rows if r["workload"] == "5"]
    if inet:
        out += [
            "## " + TITLES["5"],
            "",
            "From connect() to the echoed line, one connection at a time (each a fresh process); "
            "medians of the repetitions' medians.",
            "",
            "| server | ms per connection | p90 ms | x Perl INET |",
            "|---|---|---|---|",
        ]
        for r in inet:
            out.append("| %s | %s | %s | %s |" % (label(r["peer"]), _spread(r, "startup_ms", "%.1f"),
                                                  _num(r.get("startup_p90_ms"), "%.1f"), _ratio(r, "startup_vs_perl")))
        out.append("")
    out += http_tables(rows)
    out += import_section(summary.get("imports"))
    checks = client_check(summary)
    if checks:
        out += [
            "## Is the load client the bottleneck?",
            "",
            "If it were, every server would hit the same ceiling. The C floor does the least work per "
            "request, so it should be the fastest in every case. Where it is not, the CPU column tells "
            "why: a client using well under its two threads' worth while the machine is 100% busy means "
            "the case is bound by the machine (both cores busy, or on persistent connections the "
            "wake-up latency of each ping-pong), not by the client; its ratios are compressed toward 1.",
            "",
        ]
        out += ["- " + c for c in checks] + [""]
    if targets:
        out += ["## Targets (netserver)", "", "| target | measured | met |", "|---|---|---|"]
        for t in targets:
            out.append(
                "| %s | %s | %s |"
                % (
                    t["target"],
                    t["measured"],
                    {True: "yes", False: "**no**" if t.get("required", True) else "no", None: "n/a"}[t["met"]],
                )
            )
        out.append("")
    notes = list(notes)
    for r in wrows:
        for key, what in (("respawn_error", "respawn"), ("hup_error", "HUP")):
            if r.get(key):
                notes.append("workload 4 N=%d %s: %s failed: %s" % (r["workers"], label(r["peer"]), what, r[key]))
        if r.get("children_replaced_by_load"):
            notes.append(
                "workload 4 N=%d %s: up to %d children were replaced during the load, so its USS/PSS after "
                "load partly describe fresh children" % (r["workers"], label(r["peer"]), r["children_replaced_by_load"])
            )
    if notes:
        out += ["## Notes", ""] + ["- " + n for n in notes] + [""]
    return "\n".join(out)


def growth_section(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    out = [
        "## " + TITLES["6"],
        "",
        "From the first connect() of %d connections opened at once (each sends a line and stays open) until "
        "the last one's echo: every held connection served by a child of its own. Both servers start "
        "min_servers %d, max_servers %d, min_spare_servers %d, max_spare_servers %d; a fresh server per "
        "repetition." % ((GROWTH_TO, GROWTH_FROM, GROWTH_TO) + GROWTH_SPARES),
        "",
        "| server | growth ms | x Perl PreFork | connects ms | children at the end |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (label(r["peer"]), _spread(r, "growth_ms", "%.0f"), _num(r.get("growth_vs_perl"), "%.2f"),
                 _num(r.get("connect_ms"), "%.1f"), _num(r.get("children")))
        out.append("| %s | %s | %s | %s | %s |" % cells)
    return out + [""]


def _errors(row: dict) -> str:
    if not row["errors"]:
        return "0"
    kinds = ", ".join("%s %d" % kv for kv in sorted(row.get("errors_by_kind", {}).items()))
    return "%d (%s)" % (row["errors"], kinds) if kinds else str(row["errors"])


def http_tables(rows: list[dict]) -> list[str]:
    """The HTTP workloads' tables: req/s with ratios to granian, the epoll floor and Starman; h2load's fairness."""
    out: list[str] = []
    refs = [heading for _, _, heading in HTTP_REFERENCES]
    for wl in HTTP:
        wrows = [r for r in rows if r["workload"] == wl]
        if not wrows:
            continue
        fairness = any("fairness" in r for r in wrows)
        middle = (
            ["slowest client req/s", "mean client req/s", "slowest / mean", "mean us", "max us"]
            if fairness
            else ["p50 us", "p99 us", "max us"]
        )
        heads = ["server", "N", "req/s", *middle, "errors", *refs, "threads/worker"]
        heads.append("CPU: client / server / other, % of a core; machine, % of all")
        out += ["## " + TITLES[wl], "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for r in wrows:
            if fairness:
                cells = [
                    _spread(r, "client_min", "%.0f"),
                    _num(r.get("client_mean")),
                    _spread(r, "fairness", "%.2f"),
                    _num(r.get("mean_us")),
                    _num(r.get("max_us")),
                ]
            else:
                cells = [_num(r.get("p50_us")), _num(r.get("p99_us")), _num(r.get("max_us"))]
            cpu = "%s / %s / %s / %s" % tuple(
                _num(r.get(k)) for k in ("client_cpu_pct", "server_cpu_pct", "other_cpu_pct", "machine_busy_pct")
            )
            line = [label(r["peer"]), str(r["workers"]), _spread(r, "rps", "%.0f"), *cells, _errors(r)]
            line += [_ratio(r, name) for name, _, _ in HTTP_REFERENCES] + [str(r.get("threads_per_child") or "-"), cpu]
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    return out


def import_section(figures: dict | None) -> list[str]:
    """netserver's import time against its budget, and the slowest modules by self time."""
    if not figures:
        return []
    out = [
        "## Import time (netserver)",
        "",
        "`%s` in a fresh `python -S` (byte-compiled): %.1f ms (%.1f-%.1f), budget %.0f ms; the interpreter's own "
        "start (`python -S -c pass`, fork and exec included) %.1f ms. `python -X importtime` counts %d modules: "
        "netserver's own %.1f ms of self time, the rest (the standard library, with the interpreter's own start-up "
        "imports) %.1f ms; instrumented, so larger than the plain figure. "
        "Slowest by self time:"
        % (
            figures["statement"],
            figures["import_ms"],
            figures["import_ms_min"],
            figures["import_ms_max"],
            figures["budget_ms"],
            figures["interpreter_ms"],
            figures["modules"],
            figures["netserver_self_ms"],
            figures["stdlib_self_ms"],
        ),
        "",
        "| module | self ms | cumulative ms |",
        "|---|---|---|",
    ]
    out += ["| %s | %.2f | %.2f |" % (r["module"], r["self_ms"], r["cumulative_ms"]) for r in figures["top"]]
    return out + [""]


def client_check(summary: dict) -> list[str]:
    out = []
    rows = [r for r in summary["rows"] if r["workload"] in THROUGHPUT]
    for wl, n in sorted({(r["workload"], r["workers"]) for r in rows if r["workload"] != "3"}):
        case = [r for r in rows if r["workload"] == wl and r["workers"] == n]
        floor = [r for r in case if r["peer"] == "c-floor"]
        others = [r for r in case if r["peer"] != "c-floor"]
        if not floor or not others:
            continue
        best = max(others, key=lambda r: r["rps"])
        ratio = floor[0]["rps"] / best["rps"]
        out.append(
            "W%s N=%d: C floor %.0f req/s, %s than the fastest other (%s%s, %.0f req/s): x%.2f; "
            "client CPU %s%%, machine busy %s%%"
            % (
                wl,
                n,
                floor[0]["rps"],
                "faster" if ratio > 1 else "**not faster**",
                label(best["peer"]),
                "" if best["variant"] == "default" else " " + best["variant"],
                best["rps"],
                ratio,
                _num(floor[0]["client_cpu_pct"]),
                _num(floor[0]["machine_busy_pct"]),
            )
        )
    if any(r["workload"] == "3" for r in rows):
        out.append(
            "W3 is not checked: with two listeners the floors do not serialize accept, so all their "
            "children wake for each connection and they are no ceiling there (see W1 for the client)."
        )
    return out


def targets(summary: dict) -> list[dict]:
    """The issue's targets, checked for netserver; empty when it did not run."""
    index = {(r["workload"], r["workers"], r["peer"], r["variant"]): r for r in summary["rows"]}
    if not any(k[2] == "netserver" for k in index):
        return []
    out = []

    def check(text, row, key, limit, above=True, fmt="%.2f", required=True):
        value = row.get(key) if row else None
        met = None if value is None else (value >= limit if above else value <= limit)
        out.append(
            {"target": text, "measured": "-" if value is None else fmt % value, "met": met, "required": required}
        )

    for n, perl_min in ((4, 1.6), (32, 1.4)):
        r = index.get(("1", n, "netserver", "default"))
        check("W1 N=%d >= 0.95 x Python floor" % n, r, "vs_floor", 0.95)
        check("W1 N=%d >= %.1f x Perl" % (n, perl_min), r, "vs_perl", perl_min)
    for n in (4, 32):
        r = index.get(("1", n, "netserver-prefork", "default"))
        if r is not None:
            check("W1 N=%d PreFork >= 0.95 x netserver PreForkSimple" % n, r, "vs_sibling", 0.95)
            check("W1 N=%d PreFork >= 1.5 x Perl PreFork" % n, r, "vs_perl", 1.5)
    r = index.get(("6", GROWTH_TO, "netserver-prefork", "growth"))
    if r is not None:
        check("growth %d -> %d held: PreFork <= Perl PreFork's time" % (GROWTH_FROM, GROWTH_TO), r,
              "growth_vs_perl", 1.0, above=False)
    for n in (4, 32):
        check("W2 N=%d >= 0.95 x Python floor" % n, index.get(("2", n, "netserver", "default")), "vs_floor", 0.95)
    for n in (4, 32):
        # The target is flock; semaphore and pipe are reported against the same bar.
        for mode in ("flock", "semaphore", "pipe"):
            check(
                "W3 N=%d %s >= 1.5 x Perl %s%s" % (n, mode, mode, "" if mode == "flock" else " (reported)"),
                index.get(("3", n, "netserver", mode)),
                "vs_perl",
                1.5,
                required=mode == "flock",
            )
    for n in (4, 32):
        r = index.get(("4", n, "netserver", "default"))
        check("USS/child after load N=%d <= 1.1 x Python floor" % n, r, "uss_vs_floor", 1.1, above=False)
    r = index.get(("4", 32, "netserver", "default"))
    check("start-up N=32 <= 1.3 x Perl", r, "startup_vs_perl", 1.3, above=False)
    for n in (4, 32):
        check(
            "respawn N=%d <= Perl + 1 ms" % n,
            index.get(("4", n, "netserver", "default")),
            "respawn_minus_perl_ms",
            1.0,
            above=False,
            fmt="%+.2f ms",
        )
    for n in (4, 32):
        r = index.get(("4", n, "netserver", "default"))
        check("HUP under load N=%d: zero failed requests" % n, r, "hup_load_errors", 0, above=False, fmt="%d")
    # Issue 14's HTTP targets (its children multiplex their connections: the bars apply).
    http_ran = any(k[0] in HTTP for k in index)
    http_cases = (("http-keepalive", "keep-alive"), ("http-close", "close"), ("http-fairness", "h2load total"))
    for wl, what in http_cases if http_ran else ():
        r = index.get((wl, 4, "netserver", "default"))
        check("HTTP %s >= 1.2 x granian (issue 14)" % what, r, "vs_granian", 1.2)
        if wl != "http-fairness":
            check("HTTP %s >= 0.9 x epoll floor (issue 14)" % what, r, "vs_mux_floor", 0.9)
    if http_ran:
        r = index.get(("http-fairness", 4, "netserver", "default"))
        check("HTTP h2load slowest client >= 0.5 x mean (issue 14)", r, "fairness", 0.5)
    figures = summary.get("imports")
    if figures:
        budget = figures["budget_ms"]
        check("import netserver <= %.0f ms (budget)" % budget, figures, "import_ms", budget, above=False, fmt="%.1f ms")
    return out


def plot(summary: dict, path: Path, extra: Path | None = None) -> str | None:
    """Grouped bars of requests/s per server, one panel per workload; None or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return "no plot: matplotlib is not importable (%s); pip install matplotlib" % exc
    rows = [r for r in summary["rows"] if r["workload"] in THROUGHPUT + HTTP]
    # One row of panels for the line workloads, one for the HTTP ones.
    lines = [[wl for wl in group if any(r["workload"] == wl for r in rows)] for group in (THROUGHPUT, HTTP)]
    lines = [line for line in lines if line]
    if not lines:
        return "no plot: no throughput results"
    cols = max(len(line) for line in lines)
    fig, grid = plt.subplots(len(lines), cols, figsize=(5.5 * cols, 4.8 * len(lines)), squeeze=False)
    axes, workloads = [], []
    for i, line in enumerate(lines):
        axes += list(grid[i][: len(line)])
        workloads += line
        for ax in grid[i][len(line) :]:
            ax.set_visible(False)
    # One colour per peer in every panel; the serialize mode is told by shade and hatch.
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(ALL)}
    others = sorted({r["peer"] for r in rows} - set(colours))  # netserver@REV builds: greys
    colours.update({name: str(0.25 + 0.5 * i / max(1, len(others))) for i, name in enumerate(others)})
    for ax, wl in zip(axes, workloads, strict=True):
        wrows = [r for r in rows if r["workload"] == wl]
        ns = sorted({r["workers"] for r in wrows})
        series = sorted({(r["peer"], r["variant"]) for r in wrows}, key=lambda pv: _order(wl, 0, *pv))
        width = 0.8 / len(series)
        for i, (peer, variant) in enumerate(series):
            xs, ys, lo, hi = [], [], [], []
            for j, n in enumerate(ns):
                for r in wrows:
                    if (r["peer"], r["variant"]) == (peer, variant) and r["workers"] == n:
                        xs.append(j - 0.4 + width * (i + 0.5))
                        ys.append(r["rps"])
                        lo.append(r["rps"] - r["rps_min"])
                        hi.append(r["rps_max"] - r["rps"])
            ax.bar(
                xs,
                ys,
                width,
                yerr=[lo, hi],
                capsize=2,
                color=colours.get(peer),
                hatch=HATCHES.get(variant, ""),
                edgecolor="white",
                label=label(peer) + ("" if variant == "default" else " " + variant),
            )
        ax.set_xticks(range(len(ns)))
        ax.set_xticklabels(["N=%d" % n for n in ns])
        ax.set_title(TITLES[wl].split(": ", 1)[1], fontsize=9, wrap=True)
        ax.set_ylabel("requests/s (median, min-max)")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    kinds = [what for what, group in (("line echo", THROUGHPUT), ("HTTP hello world", HTTP))
             if any(r["workload"] in group for r in rows)]  # fmt: skip
    fig.suptitle("netserver vs peers: %s, loopback, one run" % " and ".join(kinds), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    if extra is not None:
        fig.savefig(extra, dpi=110)
    plt.close(fig)
    return None
