"""The A/B section: two netserver builds of one run, figure by figure.

Issue 10's "no cost" bar compares the commit before a change (A,
``netserver@REV``) with the one after (B) in one run: workloads 1 and 2
medians B/A >= 0.97; workload 4 start-up and USS no worse beyond the
spread, read here as "B's median is no higher than A's highest
repetition"; respawn and HUP reported, with "better" or "worse" when B's
median lies outside A's range.  Both sides took turns in every repetition
(see workloads.py), so each repetition gives a B/A ratio of two
measurements made back to back; their range is shown next to the ratio of
the medians.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from .revisions import PREFIX

BUILD = "netserver"
PERL = "perl"
THROUGHPUT_BAR = 0.97

# (workload, figure, path into the metrics, what, format, lower is better, bar kind)
#   ratio:  B/A >= THROUGHPUT_BAR, required; "ratio?": the same bar, reported
#   spread: B's median <= A's max, required; "report": no bar
FIGURES = (
    ("1", "rps", ("rps",), "W1 req/s", "%.0f", False, "ratio"),
    ("2", "rps", ("rps",), "W2 req/s", "%.0f", False, "ratio"),
    ("3", "rps", ("rps",), "W3 req/s", "%.0f", False, "ratio?"),
    ("4", "startup_ms", ("startup_ms",), "start-up ms", "%.1f", True, "spread"),
    ("4", "uss_idle_kib", ("idle", "uss_kib"), "USS idle KiB", "%.0f", True, "spread"),
    ("4", "uss_loaded_kib", ("loaded", "uss_kib"), "USS after load KiB", "%.0f", True, "spread"),
    ("4", "pss_loaded_kib", ("loaded", "pss_kib"), "PSS after load KiB", "%.0f", True, "report"),
    ("4", "respawn_ms", ("respawn_ms",), "respawn ms", "%.2f", True, "report"),
    ("4", "hup_idle_ms", ("hup_idle_ms",), "HUP idle ms", "%.1f", True, "report"),
    ("4", "hup_load_ms", ("hup_load_ms",), "HUP under load ms", "%.1f", True, "report"),
    # HTTP (http_workloads.py): against the throughput bar, reported
    ("http-keepalive", "rps", ("rps",), "HTTP keep-alive req/s", "%.0f", False, "ratio?"),
    ("http-close", "rps", ("rps",), "HTTP close req/s", "%.0f", False, "ratio?"),
    ("http-fairness", "rps", ("rps",), "HTTP h2load req/s", "%.0f", False, "ratio?"),
    ("http-fairness", "fairness", ("fairness",), "HTTP slowest / mean client", "%.2f", False, "report"),
)


def pairs(servers: list[str]) -> list[tuple[str, str]]:
    """(A, B) pairs among the netserver builds named in --servers: each
    ``netserver@REV`` against the work tree's ``netserver`` if it ran, else
    the first ``netserver@REV`` named against each later one."""
    revs = [s for s in servers if s.startswith(PREFIX)]
    if BUILD in servers:
        return [(a, BUILD) for a in revs]
    return [(revs[0], b) for b in revs[1:]] if revs else []


def _value(metrics: dict, path: tuple[str, ...]):
    v = metrics
    for p in path:
        v = v.get(p) if isinstance(v, dict) else None
    return v if isinstance(v, (int, float)) else None


def _per_rep(results: list[dict]) -> dict[tuple, dict[int, dict]]:
    """Kept metrics by (workload, workers, peer, variant), then by repetition."""
    out: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in results:
        if r["discarded"] or "error" in r["metrics"]:
            continue
        out[(r["workload"], r["workers"], r["peer"], r["variant"])][r["rep"]] = r["metrics"]
    return out


def _side(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _verdict(a: dict, b: dict, lower_better: bool) -> str:
    if b["median"] < a["min"]:
        return "better" if lower_better else "worse"
    if b["median"] > a["max"]:
        return "worse" if lower_better else "better"
    return "within A's spread"


def _row(what: str, fmt: str, lower_better: bool, kind: str, a_by_rep: dict, b_by_rep: dict) -> dict:
    a, b = _side(list(a_by_rep.values())), _side(list(b_by_rep.values()))
    row = {"what": what, "format": fmt, "a": a, "b": b, "lower_is_better": lower_better}
    if a["median"]:
        row["ratio"] = b["median"] / a["median"]
    per = [b_by_rep[k] / a_by_rep[k] for k in b_by_rep if a_by_rep.get(k)]
    if per:
        row["ratio_min"], row["ratio_max"] = min(per), max(per)
    row["verdict"] = _verdict(a, b, lower_better)
    if kind in ("ratio", "ratio?"):
        row["bar"] = ">= %.2f x A" % THROUGHPUT_BAR + ("" if kind == "ratio" else " (reported)")
        row["met"] = row.get("ratio", 0.0) >= THROUGHPUT_BAR
        row["required"] = kind == "ratio"
    elif kind == "spread":
        row["bar"] = "<= A's max"
        row["met"] = b["median"] <= a["max"]
        row["required"] = True
    else:
        row["bar"] = "reported"
        row["met"] = None
        row["required"] = False
    return row


def compare(results: list[dict], a: str, b: str, imports_by_peer: dict | None = None) -> dict:
    """The A/B rows of builds a and b (peer names) from a run's raw results."""
    reps = _per_rep(results)
    # (workload, workers, variant) measured for both builds
    cases = {(wl, n, v) for wl, n, peer, v in reps if peer == b and (wl, n, a, v) in reps}
    rows = []
    for wl, workers, variant in sorted(cases, key=lambda c: (c[0], c[1], c[2] != "default", c[2])):
        for f_wl, figure, path, what, fmt, lower_better, kind in FIGURES:
            if f_wl != wl:
                continue
            got = []
            for peer in (a, b):
                by_rep = reps[(wl, workers, peer, variant)]
                got.append({k: v for k, v in ((k, _value(m, path)) for k, m in by_rep.items()) if v is not None})
            if not got[0] or not got[1]:
                continue
            row = _row(what, fmt, lower_better, kind, got[0], got[1])
            row.update(workload=wl, workers=workers, variant=variant, figure=figure)
            perl = reps.get((wl, workers, PERL, variant if wl == "3" else "default"), {})
            perl_values = [v for v in (_value(m, path) for m in perl.values()) if v is not None]
            if perl_values:
                row["perl"] = statistics.median(perl_values)
            rows.append(row)
        if wl == "4":
            failed = {}
            for peer in (a, b):
                ms = [m for m in reps[(wl, workers, peer, variant)].values() if "hup_load_errors" in m]
                if ms:
                    failed[peer] = [sum(m["hup_load_errors"] for m in ms), sum(m["hup_load_requests"] for m in ms)]
            if len(failed) == 2:
                rows.append(
                    {
                        "workload": wl,
                        "workers": workers,
                        "variant": variant,
                        "figure": "hup_load_failed",
                        "what": "HUP under load, failed requests",
                        "failed": failed,
                        "bar": "reported",
                        "met": None,
                        "required": False,
                        "verdict": "none failed in B" if failed[b][0] == 0 else "%d failed in B" % failed[b][0],
                    }
                )
    imports_by_peer = imports_by_peer or {}
    if a in imports_by_peer and b in imports_by_peer:
        samples = [dict(enumerate(imports_by_peer[p]["import_samples_ms"])) for p in (a, b)]
        row = _row("import ms", "%.1f", True, "report", *samples)
        row.update(workload="import", workers=0, variant="default", figure="import_ms")
        rows.append(row)
    return {"a": a, "b": b, "order": order(results, a, b), "rows": rows}


def order(results: list[dict], a: str, b: str) -> dict:
    """In which order A and B took their turns, per repetition, for each case (from the records' times)."""
    turns: dict[str, dict[int, list[tuple[float, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r["peer"] in (a, b) and "at_s" in r:
            variant = "" if r["variant"] == "default" else " " + r["variant"]
            case = "W%s N=%d%s" % (r["workload"], r["workers"], variant)
            turns[case][r["rep"]].append((r["at_s"], "A" if r["peer"] == a else "B"))
    return {
        case: " ".join("".join(s for _, s in sorted(t)) for _, t in sorted(reps.items()))
        for case, reps in turns.items()
    }


def _cell(side: dict, fmt: str) -> str:
    return (fmt + " (" + fmt + "-" + fmt + ")") % (side["median"], side["min"], side["max"])


def _describe(name: str, peers: dict, versions: dict) -> str:
    if name == BUILD:
        return "netserver %s (the work tree)" % (versions.get(BUILD) or "?")
    info = peers.get(name, {})
    subject = info.get("subject", "")
    if len(subject) > 72:
        subject = subject[:69] + "..."
    return 'commit %s (`%s`, "%s")' % (info.get("sha", "?")[:12], info.get("rev", "?"), subject)


def markdown(comparisons: list[dict], peers: dict, versions: dict) -> list[str]:
    out: list[str] = []
    for comp in comparisons:
        a, b = comp["a"], comp["b"]
        out += [
            "## A/B: %s (A) against %s (B)" % (a, b),
            "",
            "A: %s. B: %s. Both ran in this run: in every repetition each was measured once, back to back, "
            "the order rotated (below), so drift on the machine hits both alike. Medians over the kept "
            "repetitions with (min-max); B/A divides the medians, with the range of the per-repetition "
            "ratios. Bars (issue 10): workloads 1 and 2 B/A >= %.2f; start-up and USS no worse beyond the "
            "spread (B's median <= A's max); respawn, HUP and the rest reported: *better* or *worse* when "
            "B's median lies outside A's range."
            % (_describe(a, peers, versions), _describe(b, peers, versions), THROUGHPUT_BAR),
            "",
        ]
        rows = comp["rows"]
        if not rows:
            out += ["No figure was measured for both builds (see the notes).", ""]
            continue
        with_perl = any("perl" in r for r in rows)
        out += [
            "| figure | N | A %s | B %s | B/A |%s bar | met |" % (a, b, " Perl |" if with_perl else ""),
            "|---|---|---|---|---|%s---|---|" % ("---|" if with_perl else ""),
        ]
        for r in rows:
            what = r["what"] + ("" if r["variant"] == "default" else " " + r["variant"])
            if "failed" in r:
                cells = ["%d of %d" % tuple(r["failed"][p]) for p in (a, b)] + ["-"]
            else:
                ratio = "-" if "ratio" not in r else "%.3f" % r["ratio"]
                if "ratio_min" in r:
                    ratio += " (%.2f-%.2f)" % (r["ratio_min"], r["ratio_max"])
                cells = [_cell(r["a"], r["format"]), _cell(r["b"], r["format"]), ratio]
            perl = ""
            if with_perl:
                perl = " %s |" % (r["format"] % r["perl"] if "perl" in r else "-")
            if r["met"] is None:
                met = r["verdict"]
            else:
                met = ("yes" if r["met"] else ("**no**" if r["required"] else "no")) + " (%s)" % r["verdict"]
            out.append(
                "| %s | %s | %s |%s %s | %s |" % (what, r["workers"] or "-", " | ".join(cells), perl, r["bar"], met)
            )
        required = [r for r in rows if r["required"]]
        out += [
            "",
            "Bars met: %d of %d." % (sum(1 for r in required if r["met"]), len(required)),
            "",
        ]
        if comp["order"]:
            out += [
                "Order of the turns, per repetition: "
                + "; ".join("%s: %s" % (case, seq) for case, seq in comp["order"].items())
                + ".",
                "",
            ]
    return out
