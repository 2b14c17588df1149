"""Names the instructions of a pipe ping-pong trace ("rip cr3" a line, after
an "echo CR3" line) by function: kernel functions from the kernel's ELF,
user ones from the pipe server's or ipcbench's (the client and the echo),
told apart by the address space. The runs in order, then the totals."""
import bisect
import collections
import subprocess
import sys

USER_END = 1 << 47


def symbols_of(elf):
    nm = subprocess.run(["nm", "-C", "--defined-only", elf], capture_output=True, text=True,
                        check=True).stdout
    syms = sorted((int(addr, 16), name) for addr, kind, name in
                  (line.split(" ", 2) for line in nm.splitlines() if line.count(" ") >= 2)
                  if kind in "tTwW")
    return [a for a, _ in syms], syms


def lookup(table, rip):
    starts, syms = table
    i = bisect.bisect_right(starts, rip) - 1
    return syms[i][1] if i >= 0 else "?"


def main():
    kernel, server, bench, trace = sys.argv[1:5]
    tables = {"kernel": symbols_of(kernel), "server": symbols_of(server),
              "bench": symbols_of(bench)}
    lines = [line.split() for line in open(trace) if line.strip()]
    echo_cr3 = int(lines[0][1], 16)
    rows = [(int(r, 16), int(c, 16)) for r, c in lines[1:]]
    # The client: the address space of the first instruction (its write's
    # syscall entry); the server's is the one neither is.
    client_cr3 = rows[0][1]
    def who(rip, cr3):
        if rip >= USER_END:
            return "kernel", lookup(tables["kernel"], rip)
        if cr3 == echo_cr3:
            return "echo", lookup(tables["bench"], rip)
        if cr3 == client_cr3:
            return "client", lookup(tables["bench"], rip)
        return "server", lookup(tables["server"], rip)
    runs = []
    for rip, cr3 in rows:
        w, n = who(rip, cr3)
        key = f"{w}: {n}"
        if runs and runs[-1][0] == key:
            runs[-1][1] += 1
        else:
            runs.append([key, 1])
    print("In order:")
    for n, count in runs:
        print(f"{count:6d}  {n}")
    print("\nBy function:")
    totals = collections.Counter()
    parts = collections.Counter()
    for rip, cr3 in rows:
        w, n = who(rip, cr3)
        totals[f"{w}: {n}"] += 1
        parts[w] += 1
    for n, count in totals.most_common():
        print(f"{count:6d}  {n}")
    print("\nBy part:")
    for n, count in parts.most_common():
        print(f"{count:6d}  {n}")
    print(f"{len(rows):6d}  instructions in one round trip")


if __name__ == "__main__":
    main()
