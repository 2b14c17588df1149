// Kernel command-line switches.
#pragma once

#include <cstddef>

namespace mk {

struct KernelConfig {
    bool donation = true;         // donate=on|off: wakers hand the CPU to the woken thread
    bool fast_path = true;        // fastpath=on|off: call/reply_recv switch directly (if donate=on)
    bool exit_on_panic = true;    // panic=exit|halt: halt keeps QEMU up for a debugger
    bool memstat = false;         // memstat=on|off: log heap use and free frames as processes end
    bool smp = true;              // smp=on|off: start the other CPUs (docs/smp.md)
    bool pcid = true;             // pcid=on|off: PCIDs when the CPU offers them (docs/smp.md)
    const char* ktest = nullptr;  // ktest=NAME|all: run in-kernel tests, then power off
    size_t ktest_length = 0;
    unsigned bad_words = 0;         // words with a value we did not understand (each one logged)
    const char* cmdline = nullptr;  // the whole command line: init's argument string
    size_t cmdline_length = 0;
};

// Parses the words we know; unknown words are ignored (the boot loader adds
// its own), a known word with a bad value is logged and keeps the default.
KernelConfig parse_kernel_config(const char* cmdline, size_t length);

}  // namespace mk
