"""Names the instructions of a trace (one address per line, hex) by the
kernel function they belong to (user addresses: "user"): the runs in order,
then the totals by function."""
import bisect
import collections
import subprocess
import sys

USER_END = 1 << 47


def symbols_of(elf):
    """The text symbols of `elf`: their start addresses, sorted, and the
    (address, name) pairs in that order."""
    nm = subprocess.run(["nm", "-C", "--defined-only", elf], capture_output=True, text=True,
                        check=True).stdout
    syms = sorted((int(addr, 16), name) for addr, kind, name in
                  (line.split(" ", 2) for line in nm.splitlines() if line.count(" ") >= 2)
                  if kind in "tTwW")
    return [a for a, _ in syms], syms


def lookup(table, rip):
    """The function of `table` (symbols_of) that holds `rip`."""
    starts, syms = table
    i = bisect.bisect_right(starts, rip) - 1
    return syms[i][1] if i >= 0 else "?"


def print_runs(names):
    """Prints the runs of one name in order, then the count of each name."""
    runs = []
    for n in names:
        if runs and runs[-1][0] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    print("In order:")
    for n, count in runs:
        print(f"{count:6d}  {n}")
    print("\nBy function:")
    for n, count in collections.Counter(names).most_common():
        print(f"{count:6d}  {n}")


def main():
    elf, trace = sys.argv[1], sys.argv[2]
    table = symbols_of(elf)
    rips = [int(line, 16) for line in open(trace) if line.strip()]
    print_runs(["user" if rip < USER_END else lookup(table, rip) for rip in rips])
    print(f"{len(rips):6d}  instructions in one round trip")


if __name__ == "__main__":
    main()
