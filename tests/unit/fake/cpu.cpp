#include "cpu.hpp"

#include "percpu.hpp"

#include <cstdio>
#include <cstdlib>

namespace mk {

namespace {
PerCpu* g_this_cpu = nullptr;
}

void FakeCpu::reset() {
    switches.clear();
    irq_enabled = true;
    waits_for_interrupt = 0;
    yield_vectors = 0;
    irq_enabled_at_last_yield = false;
    tsc = 0;
    log.clear();
    yield_handler = nullptr;
    no_return_from = nullptr;
}

namespace {
[[noreturn]] void no_user_mode(const char* what) {
    std::fprintf(stderr, "fake cpu: %s: no user mode on the host\n", what);
    std::abort();
}
}  // namespace

Error Cpu::init_user_context(Context&, uint64_t) {
    no_user_mode("init_user_context");
}
void Cpu::enter_user(uint64_t, uint64_t, uint64_t) {
    no_user_mode("enter_user");
}
Result<uint64_t> Cpu::user_space_create() {
    no_user_mode("user_space_create");
}
void Cpu::user_space_destroy(uint64_t) {
    no_user_mode("user_space_destroy");
}
Error Cpu::user_map(uint64_t, uint64_t, uint64_t, uint32_t) {
    no_user_mode("user_map");
}
Result<uint64_t> Cpu::user_unmap(uint64_t, uint64_t) {
    no_user_mode("user_unmap");
}
Result<uint64_t> Cpu::user_frame(uint64_t, uint64_t, bool) {
    no_user_mode("user_frame");
}
void* Cpu::frame_to_kernel(uint64_t) {
    no_user_mode("frame_to_kernel");
}

void Cpu::init_context(Context& ctx, void* stack_top, void (*entry)(void*), void* arg) {
    ctx.stack_top = stack_top;
    ctx.entry = entry;
    ctx.arg = arg;
}

void Cpu::switch_context(Context& from, Context& to) {
    FakeCpu::switches.push_back({&from, &to});
    if (&from == FakeCpu::no_return_from) throw FakeCpu::NoReturn{};
}

bool Cpu::interrupts_enabled() {
    return FakeCpu::irq_enabled;
}

bool Cpu::save_and_disable_interrupts() {
    bool was = FakeCpu::irq_enabled;
    FakeCpu::irq_enabled = false;
    return was;
}

void Cpu::restore_interrupts(bool enabled) {
    // Interrupts on while this CPU holds a spinlock: the timer could then
    // take the scheduler lock it holds. A kernel bug the hardware only shows
    // when a tick lands in the window; the fake shows it every time.
    if (enabled && g_this_cpu != nullptr && g_this_cpu->held_locks.count > 0) {
        std::fprintf(stderr, "fake cpu: interrupts enabled with %u lock(s) held\n",
                     g_this_cpu->held_locks.count);
        std::abort();
    }
    FakeCpu::irq_enabled = enabled;
}

void Cpu::enable_and_wait_for_interrupt() {
    FakeCpu::irq_enabled = true;
    ++FakeCpu::waits_for_interrupt;
}

void Cpu::raise_yield_vector() {
    ++FakeCpu::yield_vectors;
    FakeCpu::irq_enabled_at_last_yield = FakeCpu::irq_enabled;
    // Like the hardware: the handler runs with interrupts off.
    bool was = save_and_disable_interrupts();
    if (FakeCpu::yield_handler != nullptr) FakeCpu::yield_handler();
    restore_interrupts(was);
}

void Cpu::set_this_cpu(PerCpu* cpu) {
    g_this_cpu = cpu;
}
PerCpu* Cpu::this_cpu() {
    return g_this_cpu;
}

uint64_t Cpu::timestamp() {
    return ++FakeCpu::tsc;
}

void Cpu::log_write(const char* text, size_t len) {
    FakeCpu::log.append(text, len);
}

void Cpu::halt_forever() {
    std::fwrite(FakeCpu::log.data(), 1, FakeCpu::log.size(), stderr);
    std::abort();
}

void Cpu::shutdown(bool success) {
    std::fwrite(FakeCpu::log.data(), 1, FakeCpu::log.size(), stderr);
    std::exit(success ? 0 : 1);
}

}  // namespace mk
