// The portable part of kernel start-up, entered by the architecture's main
// once the CPU, memory and timer are up.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.hpp"
#include "frame_allocator.hpp"
#include "multiboot2.hpp"

namespace mk {

struct PerCpu;

struct StartInfo {
    PerCpu* boot_cpu;        // this CPU's state, already installed
    FrameAllocator* frames;  // physical memory, ready
    KernelConfig config;
    uint32_t timer_hz;
    const BootModule* modules;  // the multiboot2 modules (programs), mapped in the direct map
    size_t module_count;
};

// A boot module's bytes, found by the name GRUB gave it (its string).
struct ModuleImage {
    const void* data = nullptr;
    size_t size = 0;
};
[[nodiscard]] Result<ModuleImage> boot_module(const char* name);

// Adopts the running code as the boot thread, starts the idle thread and
// enables interrupts; then runs the in-kernel tests (ktest=...) or the boot
// demo. Does not return.
[[noreturn]] void kernel_start(const StartInfo& info);

// An application processor joins the scheduler: the code running now, on
// the stack its architecture gave it, becomes its idle thread. Interrupts
// stay off; the caller starts its timer and then runs
// Scheduler::idle_loop(). True once the CPU is in the CPU table, where
// placement can find it; false, and nothing done, when there is no memory
// for its idle thread.
[[nodiscard]] bool cpu_join();

// The physical frame allocator, for code that needs frames after start-up.
FrameAllocator& frame_allocator();

// In-kernel tests (tests/kernel): runs the ones `which` selects ("all" or a
// name); returns the number that failed, or -1 when `which` names none.
int run_kernel_tests(const char* which, size_t length);

// Deliberate failures for the boot tests: "panic" (an assertion), "fault"
// (a page fault), "hang" (silence, for the harness's hang detection),
// "overflow" (a kernel thread on the last CPU runs off its stack into the
// guard page below it), "overflow-boot" (the boot thread, off the boot stack).
[[noreturn]] void provoke_failure(const char* which, size_t length);

}  // namespace mk
