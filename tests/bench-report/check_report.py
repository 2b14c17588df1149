#!/usr/bin/env python3
"""scripts/bench --from-logs on the checked-in logs in logs/: the table, the
CSV and the exit status, cell by cell (no QEMU, no gnuplot: --no-plots).

The logs, as QEMU's serial port gives them (CRLF, GRUB's escapes), with
made-up figures: they test the report, they are no measurement.
  bench.icount.log             the default variant; among the cases a kernel
                               line, pipe_ping_pong failed ("error: ..."),
                               port_post_to_waiter never printed
  bench.plain.log              the same under plain emulation, complete
  bench-nofastpath.icount.log  no "config:" line (the kernel's sched line says
                               fast path off), round trips and busy_N only
  bench-nofastpath.icount-repeat.log  the same boot again (--check-repeat), one
                               figure different
  bench-nodonate.icount.log    cut short: scripts/bench killed it (timed out)
  bench-smp2.icount.log        two CPUs (cpus=2 in its config line): the
                               same-CPU round trip, within 1.05 x the
                               one-CPU figure, and the cross-CPU one
  linux.icount.log, linux.plain.log   scripts/bench-linux's lines
"""

import csv
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, os.path.join(root, "scripts", "benchlib"))
import report  # noqa: E402

failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def table_cells(text):
    """{(variant, case): {column: cell}} from the Markdown table."""
    lines = [l for l in text.splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        row = dict(zip(header, cells))
        key = (row["variant"], row["case"])
        if key in rows:
            failures.append(f"table: two rows for {key}")
        rows[key] = row
    return header, rows


def main():
    with tempfile.TemporaryDirectory(prefix="bench-report-") as out:
        return run(out)


def run(out):
    proc = subprocess.run([os.path.join(root, "scripts", "bench"), "--from-logs",
                           os.path.join(here, "logs"), "--out", out, "--no-plots"],
                          capture_output=True, text=True)
    print(proc.stdout, proc.stderr, sep="")
    # A failed case and a boot that timed out: exit 1, everything still reported.
    check("exit status", proc.returncode, 1)
    stdout = proc.stdout
    for want in ["bench: FAILED [icount fastpath=on donate=on] pipe_ping_pong failed: "
                 "error: read: PeerDied",
                 "bench: FAILED [icount fastpath=on donate=off] bench-nodonate.icount.log: "
                 "timed out after 180.0 s",
                 "bench: targets met: 2 of 8; missed: null_syscall (fastpath=on donate=on), "
                 "call_reply_recv_two_processes (fastpath=on donate=on), "
                 "call_reply_recv_two_processes (fastpath=off donate=on), "
                 "call_reply_recv_busy_8 (fastpath=on donate=on); not measured: 2",
                 "bench: FAILED [icount fastpath=off donate=on] call_reply_recv_busy_4 not "
                 "deterministic: max 1290 then 1301",
                 "bench: icount repeat: 6 of 7 cases gave identical figures twice",
                 "bench: figures include the timer's own cost (timer_overhead median: "
                 "4 icount, 21 plain), not subtracted"]:
        if want not in stdout:
            failures.append(f"stdout lacks: {want}")
    check("FAILED lines", stdout.count("bench: FAILED"), 3)

    with open(os.path.join(out, "table.md")) as f:
        table = f.read()
    if table.split("\n\n")[0] not in stdout:
        failures.append("the printed table is not table.md's")
    header, rows = table_cells(table)
    check("header", header, ["variant", "case", "n", "icount median", "icount p99",
                             "plain median", "target", "met", "Linux icount", "Linux plain"])
    on, nofp, nodon = "fastpath=on donate=on", "fastpath=off donate=on", "fastpath=on donate=off"
    linux = "linux 6.1.0-28-amd64"

    def row(variant, case, **want):
        r = rows.get((variant, case))
        if r is None:
            failures.append(f"table: no row for ({variant}, {case})")
            return
        for col, value in want.items():
            check(f"table ({variant}, {case}) {col}", r[col.replace("_", " ")], value)

    # Figures, target and verdict; thousands grouped.
    row(on, "call_reply_recv_two_processes", n="10,000", icount_median="388", icount_p99="390",
        plain_median="12,264", target="≤ 300", met="NO", **{"Linux icount": "", "Linux plain": ""})
    row(on, "call_reply_recv_480_bytes", icount_median="596", icount_p99="611", target="≤ 600",
        met="yes")
    row(on, "null_syscall", icount_median="148", plain_median="357", met="NO",
        **{"Linux icount": "334", "Linux plain": "410"})
    row(on, "exit_to_wait4", n="1,000", icount_median="21,950", plain_median="96,096", target="")
    # The failed case: shown as failed, its plain figure and Linux's still there.
    row(on, "pipe_ping_pong", icount_median="failed", icount_p99="failed", plain_median="39,816",
        target="≤ 3,000", met="failed", **{"Linux icount": "12,826", "Linux plain": "61,733"})
    # The case icount never printed: a row all the same, for its target.
    row(on, "port_post_to_waiter", icount_median="missing", plain_median="30,219",
        target="≤ 800", met="missing")
    # The ratio target, against busy_0 of the same variant.
    row(on, "call_reply_recv_busy_8", icount_median="470", target="≤ 1.2 × busy_0 = 466",
        met="NO")
    # The variant from the kernel's sched line; no plain boot of it ("–").
    row(nofp, "call_reply_recv_two_processes", icount_median="1,012", plain_median="–",
        target="≤ 1,000", met="NO")
    row(nofp, "call_reply_recv_busy_8", target="", met="")
    # What the boot that timed out printed before it was killed, n as printed.
    row(nodon, "call_reply_recv_busy_8", n="200", icount_median="40,008,901")
    row(nodon, "pipe_ping_pong_busy_1", icount_median="5,004,410")
    # Linux's own cases are rows of their own.
    row(linux, "futex_ping_pong", icount_median="", **{"Linux icount": "12,480",
                                                       "Linux plain": "58,202"})
    row(linux, "unix_socket_ping_pong", **{"Linux icount": "18,404", "Linux plain": "80,551"})
    # Two CPUs: a variant of its own, its same-CPU round trip held to the
    # one-CPU kernel's figure (388).
    smp2 = "fastpath=on donate=on cpus=2"
    row(smp2, "call_reply_recv_two_processes", icount_median="401",
        target="≤ 1.05 × one CPU = 407", met="yes")
    row(smp2, "call_reply_recv_cross_core", icount_median="2,700", target="", met="")
    check("rows per variant",
          {v: sum(1 for k in rows if k[0] == v) for v in (on, nofp, nodon, smp2, linux)},
          {on: 22, nofp: 7, nodon: 9, smp2: 3, linux: 2})
    # Nothing from the kernel's lines, the firmware or init became a row.
    check("row order", [k[1] for k in rows if k[0] == on][:6],
          ["timer_overhead", "null_syscall", "yield_int50_idle", "call_reply_recv_two_processes",
           "call_reply_recv_two_threads", "call_reply_recv_64_bytes"])

    with open(os.path.join(out, "bench.csv"), newline="") as f:
        records = list(csv.DictReader(f))
    check("CSV rows", len(records), 22 + 22 + 7 + 7 + 9 + 3 + 5 + 5)
    by_key = {(r["variant"], r["mode"], r["case"]): r for r in records}
    check("CSV keys unique", len(by_key), len(records))
    r = by_key.get((on, "icount", "call_reply_recv_two_processes"), {})
    check("CSV two processes", {k: r.get(k) for k in ("source", "status", "n", "median", "mean",
                                                      "min", "max", "p99", "overhead", "unit",
                                                      "target", "met", "log")},
          {"source": "ipcbench", "status": "ok", "n": "10000", "median": "388", "mean": "388",
           "min": "388", "max": "666", "p99": "390", "overhead": "4", "unit": "instructions",
           "target": "300", "met": "no", "log": "bench.icount.log"})
    r = by_key.get((on, "icount", "pipe_ping_pong"), {})
    check("CSV failed case", (r.get("status"), r.get("median"), r.get("error")),
          ("failed", "", "error: read: PeerDied"))
    check("CSV missing case", by_key.get((on, "icount", "port_post_to_waiter"), {}).get("status"),
          "missing")
    r = by_key.get((on, "plain", "port_post_to_waiter"), {})
    check("CSV plain", (r.get("median"), r.get("unit")), ("30219", "tsc_ticks"))
    r = by_key.get((on, "icount", "call_reply_recv_busy_8"), {})
    check("CSV ratio target", (r.get("target"), r.get("met")), ("466", "no"))
    r = by_key.get((smp2, "icount", "call_reply_recv_two_processes"), {})
    check("CSV cross-variant target", (r.get("target"), r.get("met")), ("407", "yes"))
    r = by_key.get((linux, "plain", "unix_socket_ping_pong"), {})
    check("CSV Linux", (r.get("source"), r.get("median")), ("linuxbench", "80551"))
    check("no plots asked, none drawn", sorted(os.listdir(out)), ["bench.csv", "table.md"])

    # The variant of a log without a config line or kernel line: its ISO's name.
    check("variant of bench", report.variant_from_name("bench"), on)
    check("variant of bench-nofastpath", report.variant_from_name("bench-nofastpath"), nofp)
    check("variant of bench-nodonate", report.variant_from_name("bench-nodonate"), nodon)
    # A case line split by nothing but CRs and escapes still parses; a line with
    # no figures is a failed case, not a crash.
    ev = report.parse_line(report.clean(b"\x1b[0m[ipcbench] case x_y: n=5 median=7 p99=9\r\n"))
    check("parse", (ev.kind, ev.case.name, ev.case.figures, ev.case.error),
          ("case", "x_y", {"n": 5, "median": 7, "p99": 9}, ""))
    ev = report.parse_line("[ipcbench] case z: n=10000 mean=3")
    check("parse without a median", (ev.case.name, bool(ev.case.error)), ("z", True))

    for f in failures:
        print(f"FAIL {f}")
    print(f"{'FAILED' if failures else 'ok'}: {len(failures)} failed checks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
