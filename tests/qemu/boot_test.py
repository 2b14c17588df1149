#!/usr/bin/env python3
"""Boots an ISO in QEMU and checks what the kernel says on COM1.

Prints TAP on stdout (meson's `protocol: 'tap'`): one line per in-kernel test
case ("[ktest] ok - NAME" / "[ktest] not ok - NAME"), one per --expect pattern,
and one for the exit status. A boot that runs past --timeout, or prints
nothing for --quiet-timeout seconds, fails and shows the last serial lines.
"""

import argparse
import socket
import tempfile
import os
import re
import select
import subprocess
import sys
import time

EXIT_CODES = {"pass": 0x10, "fail": 0x11, "panic": 0x12}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iso", required=True)
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--timeout", type=float, default=120.0, help="whole boot, seconds")
    ap.add_argument("--quiet-timeout", type=float, default=60.0,
                    help="longest silence on the serial port, seconds")
    ap.add_argument("--expect-exit", choices=EXIT_CODES.keys(), default="pass")
    ap.add_argument("--expect", action="append", default=[],
                    help="regular expression the serial log must contain")
    ap.add_argument("--expect-same", action="append", default=[],
                    help="regular expression with groups the serial log must match at least "
                    "twice, with the same groups every time (e.g. a figure before and after)")
    ap.add_argument("--user-tag", help="process name whose '[TAG] ok - NAME' lines are results")
    ap.add_argument("--min-user", type=int, default=1,
                    help="with --user-tag: fail unless at least this many user results")
    ap.add_argument("--min-ktests", type=int, default=0,
                    help="at least this many in-kernel test results")
    ap.add_argument("--stop-at", help="regular expression: stop QEMU once the log matches it "
                    "(for boots that do not power off); the exit status is then not checked")
    ap.add_argument("--expect-hang", action="store_true",
                    help="the boot must go silent (checks that the harness catches hangs)")
    ap.add_argument("--log", help="write the serial log here")
    ap.add_argument("--nmi-every", type=float, default=0.0,
                    help="inject an NMI through the QEMU monitor this often (seconds)")
    ap.add_argument("--nmi-after", default=r"^sched: ",
                    help="regular expression: inject NMIs only once the log matches it "
                         "(the firmware, GRUB and the kernel before its IDT cannot take them)")
    ap.add_argument("qemu_args", nargs="*", help="extra QEMU arguments (after --)")
    args = ap.parse_args()

    monitor = "none"
    monitor_path = None
    if args.nmi_every > 0:
        monitor_path = os.path.join(tempfile.mkdtemp(prefix="boot-test-"), "monitor.sock")
        monitor = f"unix:{monitor_path},server,nowait"
    cmd = [args.qemu, "-cdrom", args.iso, "-boot", "d", "-display", "none", "-vga", "none",
           "-serial", "stdio", "-monitor", monitor, "-no-reboot", "-net", "none",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"] + args.qemu_args
    if not any(a == "-cpu" for a in args.qemu_args):
        cmd += ["-cpu", "max"]
    if not any(a == "-m" for a in args.qemu_args):
        cmd += ["-m", "128M"]

    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    output = bytearray()
    last_output = start
    failure = None
    stopped = False
    fd = proc.stdout.fileno()
    next_nmi = start + args.nmi_every
    nmis = 0
    mon = None  # one monitor connection for all the NMIs
    while True:
        now = time.monotonic()
        if (monitor_path is not None and now >= next_nmi and
                re.search(args.nmi_after, output.decode("utf-8", "replace"), re.M)):
            next_nmi = now + args.nmi_every
            try:
                if mon is None:
                    mon = socket.socket(socket.AF_UNIX)
                    mon.connect(monitor_path)
                mon.sendall(b"nmi\n")
                nmis += 1
            except OSError:
                mon = None  # not listening yet, or gone
        if now - start > args.timeout:
            failure = f"timed out after {args.timeout:.0f} s"
            break
        if now - last_output > args.quiet_timeout:
            failure = f"no serial output for {args.quiet_timeout:.0f} s (hang)"
            break
        wait = min(0.2, args.nmi_every) if monitor_path is not None else 0.2
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            output += chunk
            last_output = time.monotonic()
            if args.stop_at and re.search(args.stop_at, output.decode("utf-8", "replace"), re.M):
                stopped = True
                break
    if mon is not None:
        mon.close()
    if failure is not None or stopped:
        proc.kill()
    status = proc.wait()
    elapsed = time.monotonic() - start
    text = output.decode("utf-8", "replace").replace("\r", "")
    if args.log:
        with open(args.log, "w") as f:
            f.write(text)

    results = []  # (ok, description)
    for m in re.finditer(r"^\[ktest\] (ok|not ok) - (\S+)", text, re.M):
        results.append((m.group(1) == "ok", "ktest " + m.group(2)))
    if args.min_ktests:
        n = sum(1 for _, d in results if d.startswith("ktest "))
        results.append((n >= args.min_ktests,
                        f"at least {args.min_ktests} in-kernel results (saw {n})"))
    # User test programs print through the kernel's debug log, which tags
    # each line with the process name: "[init] ok - NAME".
    if args.user_tag:
        tag = re.escape(args.user_tag)
        for m in re.finditer(rf"^\[{tag}\] (ok|not ok) - (\S+)", text, re.M):
            results.append((m.group(1) == "ok", "user " + m.group(2)))
        n = sum(1 for _, d in results if d.startswith("user "))
        results.append((n >= args.min_user, f"at least {args.min_user} user results (saw {n})"))
    if args.nmi_every > 0:
        m = re.search(r"^nmi: (\d+) taken", text, re.M)
        seen = int(m.group(1)) if m else 0
        results.append((nmis > 0 and seen > 0, f"{nmis} NMIs injected, {seen} taken by the kernel"))
    for pattern in args.expect:
        results.append((re.search(pattern, text, re.M) is not None, f"log matches /{pattern}/"))
    for pattern in args.expect_same:
        seen = [m.groups() for m in re.finditer(pattern, text, re.M)]
        same = len(seen) >= 2 and all(g == seen[0] for g in seen)
        shown = ", ".join("/".join(g) for g in seen) or "none"
        results.append((same, f"log matches /{pattern}/ at least twice, alike ({shown})"))
    if args.expect_hang:
        hung = failure is not None and failure.endswith("(hang)")
        results.append((hung, f"hang detected after {args.quiet_timeout:.0f} s of silence "
                              f"({elapsed:.1f} s{', ' + failure if failure else ''})"))
        if hung:
            tail = text.strip().splitlines()[-3:]
            results.append((bool(tail), "last serial lines shown: " + " | ".join(tail)))
    elif args.stop_at:
        results.append((stopped, f"log reached /{args.stop_at}/ ({elapsed:.1f} s"
                                 f"{', ' + failure if failure else ''})"))
    else:
        want = EXIT_CODES[args.expect_exit]
        got_ok = failure is None and status == (want << 1 | 1)
        results.append((got_ok, f"QEMU ended with the '{args.expect_exit}' status "
                                f"(status {status}, {elapsed:.1f} s"
                                f"{', ' + failure if failure else ''})"))

    print(f"1..{len(results)}")
    for i, (ok, desc) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {desc}")
    if not all(ok for ok, _ in results):
        tail = text.strip().splitlines()[-25:]
        print("# last serial lines:")
        for line in tail:
            print("#   " + line)
        print(f"# command: {' '.join(cmd)}")
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
