#!/usr/bin/env python3
"""Boots the bench ISOs (and the Linux comparison) and saves their serial logs.

    boot.py --logs DIR [--plain] [--repeat] [--linux CMD] [--timeout S] [--jobs N] ISO...

Every ISO boots under -icount shift=0,sleep=off (--repeat: twice) and, with
--plain, once more under plain emulation. At most --jobs boots run at once
(default: one per CPU). The icount figures count instructions, so sharing
the host costs them nothing; the plain figures are host time, so the plain
boots run one at a time, in a lane of their own beside the icount boots
(with --jobs 1, after them: the quietest plain figures, the longest wait).
--linux CMD runs `CMD --icount` with the icount boots and `CMD --plain` with
the plain ones, never both at once (they share a work directory).

Each boot's serial output goes to DIR/NAME.MODE.log (see report.py) as it
arrives, and every result line becomes a progress line on stdout:

    bench: [icount fastpath=on donate=on] call_reply_recv_two_processes   median 388

A boot that runs past --timeout seconds is killed. How each boot ended is
the log's last line ("[bench] ok: ..." or "[bench] failed: ..."), so the
report made from the logs alone knows it. Exits 1 if any boot failed.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

QEMU = ["qemu-system-x86_64", "-boot", "d", "-m", "128M", "-cpu", "max", "-display", "none",
        "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-net", "none",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
ICOUNT = ["-icount", "shift=0,sleep=off"]
# isa-debug-exit: QEMU exits with (code << 1) | 1; the kernel writes 0x10 for
# success, 0x11 for failure, 0x12 for a panic (as scripts/run reads them).
QEMU_EXIT = {33: (True, "kernel powered off: success"),
             35: (False, "kernel powered off: failure"),
             37: (False, "kernel panicked")}

print_lock = threading.Lock()
running = set()  # the boots' processes, for stop_all
interrupted = threading.Event()


def say(text):
    with print_lock:
        print(f"bench: {text}", flush=True)


class Boot:
    def __init__(self, name, mode, cmd, log, kind, what):
        self.name, self.mode, self.cmd, self.log, self.kind = name, mode, cmd, log, kind
        self.what = what  # for the progress lines
        self.variant = report.variant_from_name(name)
        self.variant_is_guess = True  # until the log names it
        self.ok = False
        self.after = None  # a Boot that must end before this one starts
        self.finished = threading.Event()

    @property
    def label(self):
        return f"[{self.mode} {self.variant}]"

    def run(self, timeout):
        try:
            if self.after is not None:
                self.after.finished.wait()
            return self._run(timeout)
        finally:
            self.finished.set()

    def _run(self, timeout):
        say(f"{self.label} starting {self.what}")
        start = time.monotonic()
        proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        running.add(proc)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            stop(proc)

        timer = threading.Timer(timeout, kill)
        timer.start()
        cases = failed = 0
        done = False
        tail = []
        try:
            with open(self.log, "wb") as log:
                for raw in proc.stdout:
                    log.write(raw)
                    log.flush()
                    line = report.clean(raw)
                    tail = (tail + [line])[-8:]
                    ev = report.parse_line(line)
                    if ev is None:
                        continue
                    if ev.kind in ("config", "kernel-config") and (
                            ev.kind == "config" or self.variant_is_guess):
                        self.variant = ev.text
                        self.variant_is_guess = ev.kind != "config"
                    elif ev.kind == "case":
                        cases += 1
                        c = ev.case
                        if c.error:
                            failed += 1
                            say(f"{self.label} {c.name:<34} FAILED: {c.error}")
                        else:
                            extra = "" if c.figures.get("n") == 10000 else f"  (n={c.figures.get('n')})"
                            say(f"{self.label} {c.name:<34} median {c.figures['median']:,}{extra}")
                    elif ev.kind == "done":
                        done = True
                    elif ev.kind == "error":
                        say(f"{self.label} error: {ev.text}")
                status = proc.wait()
                timer.cancel()
                took = time.monotonic() - start
                if timed_out.is_set():
                    self.ok, why = False, "timed out"
                elif interrupted.is_set():
                    self.ok, why = False, "interrupted"
                elif self.kind == "qemu":
                    self.ok, why = QEMU_EXIT.get(status, (False, f"QEMU exited with status {status}"))
                else:
                    self.ok, why = status == 0, f"exited with status {status}"
                if self.ok and not done:
                    self.ok, why = False, f"{why}, but the benchmark never said it was done"
                log.write(f"[bench] {'ok' if self.ok else 'failed'}: {why} after {took:.1f} s\n"
                          .encode())
        finally:
            timer.cancel()
            stop(proc)
            running.discard(proc)
        if self.ok:
            say(f"{self.label} done: {cases} case{'s' * (cases != 1)} ({failed} failed) in {took:.1f} s")
        else:
            say(f"{self.label} FAILED: {why} after {took:.1f} s; {cases} cases; last lines:")
            for line in tail:
                say(f"{self.label}   | {line}")
        return self.ok


def stop_all(signum, frame):
    """Ctrl-C or SIGTERM: the boots are in sessions of their own, so end them
    here, then die of the same signal (so that scripts/bench stops too)."""
    interrupted.set()
    for proc in list(running):
        stop(proc)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def stop(proc):
    """Ends the boot and whatever it started (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logs", required=True)
    ap.add_argument("--plain", action="store_true", help="plain emulation boots too")
    ap.add_argument("--repeat", action="store_true", help="each icount boot twice")
    ap.add_argument("--linux", help="the Linux comparison's command (takes --icount / --plain)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per boot")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("isos", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.logs, exist_ok=True)

    def iso_boot(iso, mode):
        name = os.path.basename(iso)[:-len(".iso")]
        cmd = QEMU + ["-cdrom", iso] + (ICOUNT if mode.startswith("icount") else [])
        cpus = report.cpus_from_name(name)  # bench-smp2: two CPUs
        if cpus:
            cmd += ["-smp", cpus]
        return Boot(name, mode, cmd, os.path.join(args.logs, f"{name}.{mode}.log"), "qemu",
                    os.path.basename(iso))

    def linux_boot(mode):
        return Boot("linux", mode, [args.linux, "--" + mode],
                    os.path.join(args.logs, f"linux.{mode}.log"), "linux",
                    f"{args.linux} --{mode}")

    # Linux first among the icount boots (it is likely the longest), last
    # among the plain ones, and never both at once.
    icount = [iso_boot(i, "icount") for i in args.isos]
    plain = [iso_boot(i, "plain") for i in args.isos] if args.plain else []
    if args.linux:
        icount.insert(0, linux_boot("icount"))
        if args.plain:
            plain.append(linux_boot("plain"))
            plain[-1].after = icount[0]
    if args.repeat:
        icount += [iso_boot(i, "icount-repeat") for i in args.isos]

    if args.isos:
        say(f"QEMU: {' '.join(QEMU)} -cdrom ISO, with {' '.join(ICOUNT)} for icount")
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)

    def one_by_one(boots):
        ok = True
        for b in boots:
            ok = b.run(args.timeout) and ok
        return ok

    # The pool runs its tasks in order: the plain lane first takes a worker
    # for as long as it lasts, the icount boots share the others; with one
    # worker, the plain lane comes last.
    jobs = max(1, args.jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        lanes = [pool.submit(one_by_one, plain)] if plain and jobs > 1 else []
        lanes += [pool.submit(b.run, args.timeout) for b in icount]
        if plain and jobs == 1:
            lanes.append(pool.submit(one_by_one, plain))
        ok = all([lane.result() for lane in lanes])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
