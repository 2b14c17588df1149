# gdb script for scripts/trace-pipe-round-trip: single-steps one round trip
# of ipcbench's pipe ping-pong (a byte to the echo process through the pipe
# server and back) and writes every instruction as "rip cr3" to $TRACE_OUT.
import os
import sys

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdb_session import connect, reg, run_to_counted_entry  # noqa: E402

connect()
# The client's first pipe::write() is the first of the run (the echo
# writes only what it read): a hardware breakpoint (the user address is in
# no address space yet), hit once, names the client's address space.
first = gdb.Breakpoint(f"*{os.environ['TRACE_PIPE_WRITE']}", type=gdb.BP_HARDWARE_BREAKPOINT)
gdb.execute("continue")
first.enabled = False
client_cr3 = reg("cr3")
# A pipe write of one byte is a Call (rax 0) with label kWrite (3), no
# payload and word 0 = 1: the client's and the echo's, one each a round
# trip. Past the warm-up, the client's starts the count; its next one ends
# it. The echo's address space is the one of the other write.
stub = run_to_counted_entry(f"$rax == 0 && $rsi == 3 && $rdx == 1 && $cr3 == {client_cr3}")
out = []
seen = 0
echo_cr3 = 0
while True:
    rip = reg("rip")
    cr3 = reg("cr3")
    if rip == stub and reg("rax") == 0 and reg("rsi") == 3 and reg("rdx") == 1:
        if cr3 == client_cr3:
            seen += 1
            if seen == 2:
                break
        else:
            echo_cr3 = cr3
    out.append((rip, cr3))
    gdb.execute("stepi", to_string=True)
with open(os.environ["TRACE_OUT"], "w") as f:
    f.write(f"echo {echo_cr3:x}\n")
    f.writelines(f"{r:x} {c:x}\n" for r, c in out)
gdb.execute("kill")
