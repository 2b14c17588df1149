# gdb script for scripts/trace-round-trip: single-steps one fast-path round
# trip and writes every instruction address to $TRACE_OUT.
import os

import gdb

gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute(f"target remote :{os.environ['TRACE_PORT']}")
entry = gdb.Breakpoint("mk_fastpath")
entry.ignore_count = int(os.environ["TRACE_SKIP"])
gdb.execute("continue")
entry.enabled = False
fastpath = int(gdb.parse_and_eval("(long)&mk_fastpath")) & (2**64 - 1)
rips = []
seen = 0
while True:
    rip = int(gdb.parse_and_eval("$rip")) & (2**64 - 1)
    if rip == fastpath:
        seen += 1
        if seen == 3:  # this one starts the next round trip
            break
    rips.append(rip)
    gdb.execute("stepi", to_string=True)
with open(os.environ["TRACE_OUT"], "w") as f:
    f.writelines(f"{r:x}\n" for r in rips)
gdb.execute("kill")
