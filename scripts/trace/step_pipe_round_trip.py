# gdb script for scripts/trace-pipe-round-trip: single-steps one round trip
# of ipcbench's pipe ping-pong (a byte to the echo process through the pipe
# server and back) and writes every instruction as "rip cr3" to $TRACE_OUT.
import os

import gdb

gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute(f"target remote :{os.environ['TRACE_PORT']}")
# The client's first pipe::write() is the first of the run (the echo
# writes only what it read): a hardware breakpoint (the user address is in
# no address space yet), hit once, names the client's address space.
first = gdb.Breakpoint(f"*{os.environ['TRACE_PIPE_WRITE']}", type=gdb.BP_HARDWARE_BREAKPOINT)
gdb.execute("continue")
first.enabled = False
client_cr3 = int(gdb.parse_and_eval("$cr3")) & (2**64 - 1)
# A pipe write of one byte is a Call (rax 0) with label kWrite (3), no
# payload and word 0 = 1: the client's and the echo's, one each a round
# trip. Past the warm-up, the client's starts the count; its next one ends
# it. The echo's address space is the one of the other write.
entry = gdb.Breakpoint("syscall_entry")
entry.condition = f"$rax == 0 && $rsi == 3 && $rdx == 1 && $cr3 == {client_cr3}"
entry.ignore_count = int(os.environ["TRACE_SKIP"])
gdb.execute("continue")
entry.enabled = False
stub = int(gdb.parse_and_eval("(long)&syscall_entry")) & (2**64 - 1)
out = []
seen = 0
echo_cr3 = 0
while True:
    rip = int(gdb.parse_and_eval("$rip")) & (2**64 - 1)
    if rip == stub:
        if (int(gdb.parse_and_eval("$rax")) == 0 and int(gdb.parse_and_eval("$rsi")) == 3
                and int(gdb.parse_and_eval("$rdx")) == 1):
            if (int(gdb.parse_and_eval("$cr3")) & (2**64 - 1)) == client_cr3:
                seen += 1
                if seen == 2:
                    break
            else:
                echo_cr3 = int(gdb.parse_and_eval("$cr3")) & (2**64 - 1)
    cr3 = int(gdb.parse_and_eval("$cr3")) & (2**64 - 1)
    out.append((rip, cr3))
    gdb.execute("stepi", to_string=True)
with open(os.environ["TRACE_OUT"], "w") as f:
    f.write(f"echo {echo_cr3:x}\n")
    f.writelines(f"{r:x} {c:x}\n" for r, c in out)
gdb.execute("kill")
