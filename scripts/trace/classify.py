"""Names the instructions of a trace (one address per line, hex) by the
kernel function they belong to (user addresses: "user"): the runs in order,
then the totals by function."""
import bisect
import collections
import subprocess
import sys

USER_END = 1 << 47


def main():
    elf, trace = sys.argv[1], sys.argv[2]
    nm = subprocess.run(["nm", "-C", "--defined-only", elf], capture_output=True, text=True,
                        check=True).stdout
    symbols = sorted((int(addr, 16), name) for addr, kind, name in
                     (line.split(" ", 2) for line in nm.splitlines() if line.count(" ") >= 2)
                     if kind in "tTwW")
    starts = [addr for addr, _ in symbols]

    def name(rip):
        if rip < USER_END:
            return "user"
        i = bisect.bisect_right(starts, rip) - 1
        return symbols[i][1] if i >= 0 else "?"

    rips = [int(line, 16) for line in open(trace) if line.strip()]
    runs = []
    for rip in rips:
        n = name(rip)
        if runs and runs[-1][0] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    print("In order:")
    for n, count in runs:
        print(f"{count:6d}  {n}")
    print("\nBy function:")
    for n, count in collections.Counter(name(r) for r in rips).most_common():
        print(f"{count:6d}  {n}")
    print(f"{len(rips):6d}  instructions in one round trip")


if __name__ == "__main__":
    main()
