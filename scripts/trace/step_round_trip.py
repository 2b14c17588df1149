# gdb script for scripts/trace-round-trip: single-steps one fast-path round
# trip and writes every instruction address to $TRACE_OUT.
import os
import sys

import gdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gdb_session import connect, reg, run_to_counted_entry  # noqa: E402

connect()
# First to the raw ping-pong: usertest's init (tests/user/utest.cpp)
# spawns pong, then rawpong; with init itself that is the third program
# the kernel starts. (A breakpoint hit costs a round trip to gdb: skipping
# the hundred thousand fast-path entries before it one by one took minutes.)
spawn = gdb.Breakpoint("mk::spawn_program")
spawn.ignore_count = 2
gdb.execute("continue")
spawn.enabled = False
# TRACE_SET: kernel settings to change first, as gdb assignments separated
# by ";" (mk::g_ipc_fast_path=0 traces the general path).
for assignment in filter(None, os.environ.get("TRACE_SET", "").split(";")):
    gdb.execute(f"set var {assignment}")
# Every round trip enters the stub with Call (rax 0) once, and ReplyRecv
# once: well inside the loop, one Call's entry starts the count.
stub = run_to_counted_entry("$rax == 0")
rips = []
seen = 0
while True:
    rip = reg("rip")
    if rip == stub and reg("rax") == 0:
        seen += 1
        if seen == 2:  # this one starts the next round trip
            break
    rips.append(rip)
    gdb.execute("stepi", to_string=True)
with open(os.environ["TRACE_OUT"], "w") as f:
    f.writelines(f"{r:x}\n" for r in rips)
gdb.execute("kill")
