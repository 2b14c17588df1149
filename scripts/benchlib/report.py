#!/usr/bin/env python3
"""Turns the serial logs of scripts/bench into a table, a CSV and SVG plots.

    report.py --logs DIR --out DIR [--no-plots]

Each log in DIR is one boot, named NAME.MODE.log: NAME the ISO it booted
(bench, bench-nofastpath, bench-nodonate, bench-smp2) or "linux" (scripts/bench-linux),
MODE "icount" (-icount shift=0,sleep=off: TSC ticks are guest instructions),
"plain" (plain emulation: TSC ticks of host time, noisy) or "icount-repeat"
(a second icount boot, compared figure by figure with the first). The lines
read, wherever they sit among the kernel's own:

    [ipcbench] config: fastpath=on donate=on           (the variant)
    [ipcbench] case NAME: n=10000 median=M mean=A min=L max=H p99=P overhead=O
    [ipcbench] case NAME: error ...                    (a case that failed)
    [ipcbench] ipcbench done
    [linuxbench] config: linux VERSION / case ... / done
    [bench] ok: ... | [bench] failed: ...              (scripts/bench: how the boot ended)

Without a config line the variant comes from the kernel's "sched: ...
donation on, fast path on" line, else from the ISO's name. Any case line
becomes a row keyed by (variant, case).

Prints the table (Markdown, aligned), a list of failures and the targets met;
writes DIR_OUT/table.md, DIR_OUT/bench.csv and, unless --no-plots, busy.svg
and cases.svg drawn by gnuplot. Exits 1 when a boot failed or did not finish,
a case failed, or an icount repeat differed; a missed target is reported,
not a failure (speed is the benchmark's business, not a test's).
"""

import argparse
import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

# The targets, in guest instructions per operation under -icount (the
# project's design, "Targets"). A target applies to the rows of a variant
# with exactly its words (same_variant). A limit is a number of instructions,
# (factor, case): that many times the median of another case, same variant,
# or (factor, case, variant, label): of a case of another variant, which the
# table calls `label`.
DEFAULT_VARIANT = "fastpath=on donate=on"
TARGETS = [
    # case                             variant                   limit
    ("null_syscall",                   "fastpath=on donate=on",  60),
    ("call_reply_recv_two_processes",  "fastpath=on donate=on",  300),
    ("call_reply_recv_two_processes",  "fastpath=off donate=on", 1000),
    ("call_reply_recv_480_bytes",      "fastpath=on donate=on",  600),
    ("pipe_ping_pong",                 "fastpath=on donate=on",  3000),
    ("port_post_to_waiter",            "fastpath=on donate=on",  800),
    ("call_reply_recv_busy_8",         "fastpath=on donate=on",  (1.2, "call_reply_recv_busy_0")),
    # The other CPUs cost the same-CPU round trip nothing (docs/smp.md).
    ("call_reply_recv_two_processes",  "fastpath=on donate=on cpus=2",
     (1.05, "call_reply_recv_two_processes", "fastpath=on donate=on", "one CPU")),
]

MODES = ("icount", "plain", "icount-repeat")
FIGURES = ("n", "median", "mean", "min", "max", "p99", "overhead")
UNITS = {"icount": "instructions", "icount-repeat": "instructions", "plain": "tsc_ticks"}
BUSY = re.compile(r"^(?P<family>\w+)_busy_(?P<n>\d+)$")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CASE = re.compile(r"\[(?P<tag>ipcbench|linuxbench)\] case (?P<name>[A-Za-z0-9_]+): (?P<rest>.*)")
CONFIG = re.compile(r"\[(?P<tag>ipcbench|linuxbench)\] config: (?P<config>.*\S)")
DONE = re.compile(r"\[(?P<tag>ipcbench|linuxbench)\] (ipcbench )?done\s*$")
ERROR = re.compile(r"\[(?P<tag>ipcbench|linuxbench)\] error:? (?P<what>.*)")
KERNEL_CONFIG = re.compile(r"^sched: .*donation (?P<donate>on|off), fast path (?P<fastpath>on|off)")
INIT_EXIT = re.compile(r"\[init\] ipcbench exited with status (?P<status>\S+)")
HARNESS = re.compile(r"^\[bench\] (?P<verdict>ok|failed): (?P<why>.*)")
FIGURE = re.compile(r"\b(\w+)=(\d+)\b")


@dataclass
class Case:
    name: str
    figures: dict  # FIGURES -> int
    error: str = ""  # set when the case failed


@dataclass
class Event:
    """What one serial line says, for the report and for scripts/bench's progress lines."""
    kind: str  # case | config | kernel-config | done | error | init-exit | harness-ok | harness-failed
    tag: str = ""
    case: Case = None
    text: str = ""


def clean(raw):
    """A serial line without its carriage returns and terminal escapes."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    return ANSI.sub("", raw).replace("\r", "").rstrip("\n")


def parse_line(line):
    """The Event a cleaned serial line carries, or None (kernel log, firmware...)."""
    m = CASE.search(line)
    if m:
        rest = m["rest"].strip()
        figures = {k: int(v) for k, v in FIGURE.findall(rest) if k in FIGURES}
        if rest.startswith("error") or "median" not in figures:
            return Event("case", m["tag"], Case(m["name"], figures, rest or "no figures"))
        return Event("case", m["tag"], Case(m["name"], figures))
    m = CONFIG.search(line)
    if m:
        return Event("config", m["tag"], text=m["config"])
    m = DONE.search(line)
    if m:
        return Event("done", m["tag"])
    m = ERROR.search(line)
    if m:
        return Event("error", m["tag"], text=m["what"])
    m = KERNEL_CONFIG.search(line)
    if m:
        return Event("kernel-config", text=f"fastpath={m['fastpath']} donate={m['donate']}")
    m = INIT_EXIT.search(line)
    if m:
        return Event("init-exit", text=m["status"])
    m = HARNESS.search(line)
    if m:
        return Event("harness-" + m["verdict"], text=m["why"])
    return None


SMP_PART = re.compile(r"^smp(?P<n>[1-9]\d*)$")


def cpus_from_name(name):
    """bench-smp2 -> "2": the CPUs an ISO's name asks for (boot.py boots it
    so), or None."""
    for part in name.split("-")[1:]:
        m = SMP_PART.match(part)
        if m:
            return m["n"]
    return None


def variant_from_name(name):
    """bench -> fastpath=on donate=on; bench-nofastpath -> fastpath=off donate=on;
    bench-smp2 -> fastpath=on donate=on cpus=2; ..."""
    if name == "linux":
        return "linux"
    words = {"fastpath": "on", "donate": "on"}
    for part in name.split("-")[1:]:
        if part.startswith("no"):
            words[part[2:]] = "off"
    if cpus_from_name(name):
        words["cpus"] = cpus_from_name(name)
    return " ".join(f"{k}={v}" for k, v in words.items())


def variant_words(variant):
    return dict(w.split("=", 1) for w in variant.split() if "=" in w)


def same_variant(a, b):
    """A target's variant names exactly the switches of a run's (a run with
    cpus=2 is a variant of its own)."""
    return variant_words(a) == variant_words(b)


def variant_rank(variant):
    """The default first, then one switch off, then more; Linux last."""
    words = variant_words(variant)
    if not words:
        return (99, variant)
    return (sum(v != "on" for v in words.values()), variant)


@dataclass
class Run:
    """One boot's log."""
    path: str
    name: str
    mode: str
    source: str = ""  # ipcbench | linuxbench
    variant: str = ""
    cases: dict = field(default_factory=dict)  # name -> Case, in the order printed
    done: bool = False
    problems: list = field(default_factory=list)  # why the boot counts as failed

    @property
    def label(self):
        return f"{self.mode} {self.variant}"


def load_run(path):
    base = os.path.basename(path)[:-len(".log")]
    name, _, mode = base.rpartition(".")
    run = Run(path, name, mode)
    config = kernel_config = None
    harness = None
    init_status = None
    errors = []
    with open(path, "rb") as f:
        for raw in f:
            ev = parse_line(clean(raw))
            if ev is None:
                continue
            if ev.kind == "case":
                run.source = ev.tag
                run.cases[ev.case.name] = ev.case
            elif ev.kind == "config":
                run.source, config = ev.tag, ev.text
            elif ev.kind == "kernel-config":
                kernel_config = kernel_config or ev.text
            elif ev.kind == "done":
                run.source, run.done = ev.tag, True
            elif ev.kind == "error":
                errors.append(ev.text)
            elif ev.kind == "init-exit":
                init_status = ev.text
            elif ev.kind.startswith("harness-"):
                harness = (ev.kind, ev.text)
    if kernel_config and cpus_from_name(name) and "cpus=" not in kernel_config:
        kernel_config += f" cpus={cpus_from_name(name)}"  # a run that failed before its config line
    run.variant = config or kernel_config or variant_from_name(name)
    if harness is not None and harness[0] == "harness-failed":
        run.problems.append(harness[1])
    elif not run.done:
        run.problems.append("no 'done' line: the benchmark did not finish")
    if init_status not in (None, "0"):
        run.problems.append(f"init says ipcbench exited with status {init_status}")
    run.problems += [f"error: {e}" for e in errors]
    return run


def load(logdir):
    runs = []
    for entry in sorted(os.listdir(logdir)):
        if not entry.endswith(".log"):
            continue
        mode = entry[:-len(".log")].rpartition(".")[2]
        if mode not in MODES:
            print(f"bench: {entry}: not NAME.MODE.log with MODE one of {', '.join(MODES)}; skipped",
                  file=sys.stderr)
            continue
        runs.append(load_run(os.path.join(logdir, entry)))
    return runs


def fmt(v):
    return f"{v:,}" if isinstance(v, int) else str(v)


class Report:
    def __init__(self, runs):
        self.runs = runs
        self.mk = [r for r in runs if r.source != "linuxbench"]
        self.linux = {r.mode: r for r in runs if r.source == "linuxbench"}
        self.variants = sorted({r.variant for r in self.mk}, key=variant_rank)
        self.rows = self._rows()  # (variant, case), in the table's order
        self.targets = {}  # (variant, case) -> (limit, text) for the icount rows
        for case, variant, limit in TARGETS:
            for v in self.variants:
                if same_variant(variant, v):
                    self.targets[(v, case)] = self._limit(v, limit)

    def run(self, variant, mode):
        for r in self.mk:
            if r.variant == variant and r.mode == mode:
                return r
        return None

    def _rows(self):
        rows = []
        for v in self.variants:
            names = []
            for mode in MODES:
                r = self.run(v, mode)
                names += [c for c in (r.cases if r else {}) if c not in names]
            # A case a target names but no log printed is a row too ("missing").
            for case, tv, _ in TARGETS:
                if same_variant(tv, v) and case not in names:
                    names.append(case)
            rows += [(v, c) for c in names]
        return rows

    def _limit(self, variant, limit):
        if isinstance(limit, int):
            return limit, f"≤ {fmt(limit)}"
        factor, other = limit[0], limit[1]
        base_variant = limit[2] if len(limit) > 2 else variant
        base = "–"
        for v in self.variants:
            if same_variant(base_variant, v):
                base = self.figure(v, "icount", other)
        busy = BUSY.match(other)
        text = f"≤ {factor} × " + (f"busy_{busy['n']}" if busy else other)
        if len(limit) > 2:
            text = f"≤ {factor} × {limit[3]}"
        if isinstance(base, int):
            return round(factor * base), f"{text} = {fmt(round(factor * base))}"
        return None, f"{text} (?)"

    def case(self, variant, mode, name):
        """The Case, "missing" (the run exists, the case does not), or None (no such run)."""
        r = self.run(variant, mode)
        if r is None:
            return None
        return r.cases.get(name, "missing")

    def figure(self, variant, mode, name, key="median"):
        """A figure, "failed", "missing" or "–" (not run)."""
        c = self.case(variant, mode, name)
        if c is None:
            return "–"
        if c == "missing":
            return "missing"
        if c.error:
            return "failed"
        return c.figures.get(key, "?")

    def linux_figure(self, mode, name):
        r = self.linux.get(mode)
        if r is None:
            return "–"
        c = r.cases.get(name)
        if c is None:
            return "missing"
        return "failed" if c.error else c.figures.get("median", "?")

    def verdict(self, variant, name):
        if (variant, name) not in self.targets:
            return "", ""
        limit, text = self.targets[(variant, name)]
        median = self.figure(variant, "icount", name)
        if not isinstance(median, int):
            return text, median if median in ("failed", "missing") else "not run"
        if limit is None:
            return text, "?"
        return text, "yes" if median <= limit else "NO"

    def table(self):
        header = ["variant", "case", "n", "icount median", "icount p99", "plain median",
                  "target", "met"]
        with_linux = bool(self.linux)
        if with_linux:
            header += ["Linux icount", "Linux plain"]
        lines = []
        for v, name in self.rows:
            target, met = self.verdict(v, name)
            n = self.figure(v, "icount", name, "n")
            if not isinstance(n, int):
                n = self.figure(v, "plain", name, "n")
            row = [v, name, n if isinstance(n, int) else "", self.figure(v, "icount", name),
                   self.figure(v, "icount", name, "p99"), self.figure(v, "plain", name),
                   target, met]
            if with_linux:
                matched = v == self.default_variant() and any(
                    name in r.cases for r in self.linux.values())
                row += ([self.linux_figure("icount", name), self.linux_figure("plain", name)]
                        if matched else ["", ""])
            lines.append(row)
        if with_linux:
            mk_cases = {name for v, name in self.rows if v == self.default_variant()}
            linux_variant = next(iter(self.linux.values())).variant
            names = []
            for r in self.linux.values():
                names += [c for c in r.cases if c not in names and c not in mk_cases]
            for name in names:
                n = next((r.cases[name].figures.get("n", "") for r in self.linux.values()
                          if name in r.cases), "")
                lines.append([linux_variant, name, n, "", "", "", "", "",
                              self.linux_figure("icount", name), self.linux_figure("plain", name)])
        return markdown(header, lines, right=set(range(2, len(header))) - {6, 7})

    def default_variant(self):
        for v in self.variants:
            if same_variant(DEFAULT_VARIANT, v):
                return v
        return self.variants[0] if self.variants else None

    def failures(self):
        """One line per failed boot and failed case: the reasons to exit 1."""
        out = []
        for r in self.runs:
            for p in r.problems:
                out.append(f"[{r.label}] {os.path.basename(r.path)}: {p}")
            for c in r.cases.values():
                if c.error:
                    out.append(f"[{r.label}] {c.name} failed: {c.error}")
        out += self.repeat_differences()
        return out

    def repeat_differences(self):
        out = []
        for r in self.runs:
            if r.mode != "icount-repeat":
                continue
            first = next((f for f in self.runs if f.mode == "icount" and f.name == r.name), None)
            if first is None:
                continue
            for name, c in r.cases.items():
                a = first.cases.get(name)
                if a is not None and not a.error and not c.error and a.figures != c.figures:
                    diff = ", ".join(f"{k} {a.figures.get(k)} then {c.figures.get(k)}"
                                     for k in FIGURES if a.figures.get(k) != c.figures.get(k))
                    out.append(f"[icount {r.variant}] {name} not deterministic: {diff}")
        return out

    def repeat_summary(self):
        checked = [r for r in self.runs if r.mode == "icount-repeat"]
        if not checked:
            return None
        n = sum(len(r.cases) for r in checked)
        bad = len(self.repeat_differences())
        return (f"icount repeat: {n - bad} of {n} cases gave identical figures twice"
                if n else "icount repeat: no cases to compare")

    def targets_summary(self):
        met, missed, unmeasured = 0, [], 0
        for case, variant, _ in TARGETS:
            matching = [v for v in self.variants if same_variant(variant, v)]
            for v in matching:
                verdict = self.verdict(v, case)[1]
                if verdict == "yes":
                    met += 1
                elif verdict == "NO":
                    missed.append(f"{case} ({v})")
                else:
                    unmeasured += 1
            unmeasured += not matching  # that variant was not run
        text = f"targets met: {met} of {met + len(missed) + unmeasured}"
        if missed:
            text += "; missed: " + ", ".join(missed)
        if unmeasured:
            text += f"; not measured: {unmeasured}"
        return text

    def overhead_note(self):
        parts = []
        for mode in ("icount", "plain"):
            v = self.default_variant()
            m = self.figure(v, mode, "timer_overhead") if v else "–"
            if isinstance(m, int):
                parts.append(f"{fmt(m)} {mode}")
        if not parts:
            return None
        return ("figures include the timer's own cost (timer_overhead median: "
                + ", ".join(parts) + "), not subtracted")

    def csv_rows(self):
        cols = ["source", "variant", "mode", "case", "status", *FIGURES, "unit", "target", "met",
                "error", "log"]
        rows = []
        order = {key: i for i, key in enumerate(self.rows)}
        for r in sorted(self.runs, key=lambda r: (r.source == "linuxbench", variant_rank(r.variant),
                                                  MODES.index(r.mode))):
            names = list(r.cases)
            if r.source != "linuxbench":
                names += [c for v, c in self.rows if v == r.variant and c not in r.cases]
                names.sort(key=lambda c: order.get((r.variant, c), len(order)))
            for name in names:
                c = r.cases.get(name)
                status = "missing" if c is None else "failed" if c.error else "ok"
                target = met = ""
                if r.mode == "icount" and (r.variant, name) in self.targets:
                    limit = self.targets[(r.variant, name)][0]
                    target = limit if limit is not None else ""
                    met = {"yes": "yes", "NO": "no"}.get(self.verdict(r.variant, name)[1], "")
                figs = c.figures if c else {}
                rows.append([r.source or "ipcbench", r.variant, r.mode, name, status,
                             *[figs.get(k, "") for k in FIGURES], UNITS[r.mode], target, met,
                             c.error if c else "", os.path.basename(r.path)])
        return cols, rows

    # Plots ---------------------------------------------------------------

    def busy_series(self):
        """{(family, variant): {N: icount median}} for the *_busy_N cases."""
        series = {}
        for v in self.variants:
            r = self.run(v, "icount")
            for name, c in (r.cases.items() if r else []):
                m = BUSY.match(name)
                if m and not c.error:
                    series.setdefault((m["family"], v), {})[int(m["n"])] = c.figures["median"]
        return series

    def bar_series(self):
        """The case names (no *_busy_N: the other plot has them) and one column per
        variant, plus Linux: {title: {case: icount median}}."""
        cases, columns = [], {}
        for v in self.variants:
            r = self.run(v, "icount")
            for name, c in (r.cases.items() if r else []):
                if BUSY.match(name) or c.error:
                    continue
                if name not in cases:
                    cases.append(name)
                columns.setdefault(v, {})[name] = c.figures["median"]
        r = self.linux.get("icount")
        if r is not None:
            for name, c in r.cases.items():
                if c.error:
                    continue
                if name not in cases:
                    cases.append(name)
                columns.setdefault(r.variant, {})[name] = c.figures["median"]
        return cases, columns


def markdown(header, rows, right=()):
    cells = [[str(c) if not isinstance(c, int) else fmt(c) for c in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


GNUPLOT_COMMON = """\
set terminal svg size {w},{h} dynamic noenhanced font 'Helvetica,12' background '#ffffff'
set output '{out}'
set datafile separator '\\t'
set datafile missing '?'
set logscale y
set format y '%.0s%c'
set grid ytics mytics lc rgb '#dddddd'
set key top left
"""


COLOURS = ["#1f5fa8", "#2e9e44", "#d0402b", "#8a4fb0", "#e08a00", "#555555"]


def quote(s):
    return '"' + s.replace('"', "'") + '"'


def plot(report, outdir):
    """Writes busy.svg and cases.svg (and their data and gnuplot scripts); the SVG paths."""
    paths = []
    series = report.busy_series()
    if series:
        keys = sorted(series, key=lambda k: (k[0] != "call_reply_recv", k[0], variant_rank(k[1])))
        ns = sorted({n for s in series.values() for n in s})
        data = os.path.join(outdir, "busy.dat")
        with open(data, "w") as f:
            f.write("# N\t" + "\t".join(f"{fam}, {v}" for fam, v in keys) + "\n")
            for n in ns:
                f.write(f"{n}\t" + "\t".join(str(series[k].get(n, "?")) for k in keys) + "\n")
        families = sorted({k[0] for k in keys}, key=lambda f: (f != "call_reply_recv", f))
        plots = []
        variants = sorted({k[1] for k in keys}, key=variant_rank)
        for i, (fam, v) in enumerate(keys):
            # A colour per variant; a point and dash type per family.
            f = families.index(fam)
            plots.append(f"'{data}' using 1:{i + 2} with linespoints title {quote(f'{fam}, {v}')}"
                         f" lw 2 pt {5 + 2 * f} ps 0.9 dt {1 + f}"
                         f" lc rgb '{COLOURS[variants.index(v) % len(COLOURS)]}'")
        out = os.path.join(outdir, "busy.svg")
        script = GNUPLOT_COMMON.format(w=900, h=560, out=out) + f"""\
set title 'Round trip with N CPU-bound threads running (QEMU -icount, median)'
set xlabel 'N busy threads'
set ylabel 'guest instructions per round trip'
set xtics ({', '.join(str(n) for n in ns)})
set xrange [-0.5:{max(ns) + 0.5}]
set key outside bottom center vertical maxrows 3
plot {', '.join(plots)}
"""
        paths.append(gnuplot(script, os.path.join(outdir, "busy.gp"), out))
    cases, columns = report.bar_series()
    if cases:
        titles = list(columns)
        data = os.path.join(outdir, "cases.dat")
        with open(data, "w") as f:
            f.write("# case\t" + "\t".join(titles) + "\n")
            for c in cases:
                f.write(c + "\t" + "\t".join(str(columns[t].get(c, "?")) for t in titles) + "\n")
        k = len(titles)
        plots = [f"'{data}' using {i + 2}:xtic(1) title {quote(t)} lc rgb '{COLOURS[i % len(COLOURS)]}'"
                 for i, t in enumerate(titles)]
        # The figure above each bar: bar i of k in cluster x sits at x + (i - (k-1)/2) / (k+1).
        plots += [f"'{data}' using ($0 + ({i} - {(k - 1) / 2}) / {k + 1}.0):{i + 2}:{i + 2} "
                  f"with labels rotate left offset 0,0.4 font ',9' notitle" for i in range(k)]
        out = os.path.join(outdir, "cases.svg")
        script = GNUPLOT_COMMON.format(w=max(900, 70 * len(cases) + 200), h=620, out=out) + f"""\
set title 'Median per operation, QEMU -icount (guest instructions; log scale)'
set ylabel 'guest instructions'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by 35 right nomirror
set yrange [1:*]
set xrange [-0.6:{len(cases) - 0.4}]
set offsets 0, 0, graph 0.15, 0
set bmargin 10
set rmargin 4
plot {', '.join(plots)}
"""
        paths.append(gnuplot(script, os.path.join(outdir, "cases.gp"), out))
    return paths


def gnuplot(script, script_path, out):
    with open(script_path, "w") as f:
        f.write(script)
    subprocess.run(["gnuplot", script_path], check=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logs", required=True, help="the directory of NAME.MODE.log files")
    ap.add_argument("--out", required=True, help="where table.md, bench.csv and the plots go")
    ap.add_argument("--no-plots", action="store_true", help="no gnuplot (table and CSV only)")
    args = ap.parse_args()

    runs = load(args.logs)
    if not runs:
        print(f"bench: no logs in {args.logs}", file=sys.stderr)
        return 1
    report = Report(runs)
    os.makedirs(args.out, exist_ok=True)
    notes = [n for n in (report.targets_summary(), report.overhead_note(),
                         report.repeat_summary()) if n]
    table = report.table()
    failures = report.failures()
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n\n" + "".join(f"- {n}\n" for n in notes + failures))
    cols, rows = report.csv_rows()
    with open(os.path.join(args.out, "bench.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)

    print()
    print(table)
    print()
    for n in notes:
        print(f"bench: {n}")
    for fail in failures:
        print(f"bench: FAILED {fail}")
    plots = [] if args.no_plots else plot(report, args.out)
    print(f"bench: table  {os.path.join(args.out, 'table.md')}")
    print(f"bench: csv    {os.path.join(args.out, 'bench.csv')}")
    for p in plots:
        print(f"bench: plot   {p}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
