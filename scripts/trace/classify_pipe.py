"""Names the instructions of a pipe ping-pong trace ("rip cr3" a line, after
an "echo CR3" line) by function: kernel functions from the kernel's ELF,
user ones from the pipe server's or ipcbench's (the client and the echo),
told apart by the address space. The runs in order, then the totals."""
import collections
import sys

from classify import USER_END, lookup, print_runs, symbols_of


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
    named = [who(rip, cr3) for rip, cr3 in rows]
    print_runs([f"{w}: {n}" for w, n in named])
    parts = collections.Counter(w for w, _ in named)
    print("\nBy part:")
    for n, count in parts.most_common():
        print(f"{count:6d}  {n}")
    print(f"{len(rows):6d}  instructions in one round trip")


if __name__ == "__main__":
    main()
