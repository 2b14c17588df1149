# What the gdb scripts of scripts/trace-* share: the connection to QEMU's
# gdb stub, registers as unsigned numbers, and the run to a counted entry
# of the syscall stub.
import os

import gdb


def connect():
    gdb.execute("set pagination off")
    gdb.execute("set confirm off")
    gdb.execute(f"target remote :{os.environ['TRACE_PORT']}")


def reg(name):
    """Register `name` ("rip", "cr3", ...) as an unsigned 64-bit number."""
    return int(gdb.parse_and_eval(f"${name}")) & (2**64 - 1)


def run_to_counted_entry(condition):
    """Runs to the syscall stub's entry where `condition` holds, letting
    $TRACE_SKIP such entries go by first; returns the stub's address."""
    entry = gdb.Breakpoint("syscall_entry")
    entry.condition = condition
    entry.ignore_count = int(os.environ["TRACE_SKIP"])
    gdb.execute("continue")
    entry.enabled = False
    return int(gdb.parse_and_eval("(long)&syscall_entry")) & (2**64 - 1)
