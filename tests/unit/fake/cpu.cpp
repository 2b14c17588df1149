#include "cpu.hpp"

#include "percpu.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "kernel.hpp"
#include "kernel_stack.hpp"
#include "memory.hpp"
#include "mk/abi.hpp"

namespace mk {

namespace {
PerCpu* g_this_cpu = nullptr;
}

void FakeCpu::reset() {
    switches.clear();
    on_switch = nullptr;
    irq_enabled = true;
    waits_for_interrupt = 0;
    yield_vectors = 0;
    irq_enabled_at_last_yield = false;
    tsc = 0;
    frames_zeroed = 0;
    frames_zeroed_irqs_off = 0;
    log.clear();
    yield_handler = nullptr;
    no_return_from = nullptr;
    stacks_left = 0;
    notified.clear();
    retired = 0;
    unloaded.clear();
    tlb_flushes.clear();
    kernel_stack_maps = 0;
    kernel_stack_unmaps.clear();
    tlb_watched = nullptr;
    forget_cpus();
    Scheduler::set_donation_enabled(true);
}

namespace {
[[noreturn]] void no_user_mode(const char* what) {
    std::fprintf(stderr, "fake cpu: %s: no user mode on the host\n", what);
    std::abort();
}

// A user address space on the host: a page table as a map from page
// address to the frame mapped there (a host address: frame_allocator() on
// the host hands out host memory) and its abi::Prot bits.
struct Mapping {
    uint64_t frame;
    uint32_t prot;
};
using PageTable = std::map<uint64_t, Mapping>;

std::map<uint64_t, PageTable>& spaces() {
    static std::map<uint64_t, PageTable> s;
    return s;
}
uint64_t g_next_root = 0x1000;

PageTable& space_of(uint64_t root) {
    auto it = spaces().find(root);
    if (it == spaces().end()) {
        std::fprintf(stderr, "fake cpu: no user address space %#llx\n",
                     static_cast<unsigned long long>(root));
        std::abort();
    }
    return it->second;
}
}  // namespace

// Nothing to allocate: user threads never run on the host.
Error Cpu::init_user_context(Context&, uint64_t, const TlbSpace&) {
    return Error::None;
}
void Cpu::enter_user(uint64_t, uint64_t, uint64_t) {
    no_user_mode("enter_user");
}
Result<uint64_t> Cpu::user_space_create() {
    uint64_t root = g_next_root;
    g_next_root += 0x1000;
    spaces()[root];
    return root;
}
// Like the kernel: every frame still mapped goes back to the frame allocator.
void Cpu::user_space_destroy(uint64_t root, bool) {
    if (root == 0) return;
    for (const auto& [va, m] : space_of(root)) frame_allocator().free(m.frame);
    spaces().erase(root);
}
// The refusals of arch/x86_64/context.cpp.
Error Cpu::user_map(uint64_t root, uint64_t virt, uint64_t frame, uint32_t prot) {
    if (virt < abi::kUserBase || virt >= abi::kUserEnd || (virt % abi::kPageSize) != 0) {
        return Error::InvalidArgument;
    }
    if ((prot & abi::kProtWrite) != 0 && (prot & abi::kProtExec) != 0) {
        return Error::InvalidArgument;
    }
    PageTable& pt = space_of(root);
    if (pt.count(virt) != 0) return Error::BadState;
    pt[virt] = Mapping{frame, prot};
    return Error::None;
}
Result<uint64_t> Cpu::user_unmap(uint64_t root, uint64_t virt, void (*)(void*, uint64_t), void*) {
    if (virt < abi::kUserBase || virt >= abi::kUserEnd) return Error::InvalidArgument;
    PageTable& pt = space_of(root);
    auto it = pt.find(virt & ~(abi::kPageSize - 1));
    if (it == pt.end()) return Error::BadState;
    uint64_t frame = it->second.frame;
    pt.erase(it);
    return frame;
}
Result<uint64_t> Cpu::user_frame(uint64_t root, uint64_t virt, bool write) {
    if (virt < abi::kUserBase || virt >= abi::kUserEnd) return Error::BadAddress;
    const PageTable& pt = space_of(root);
    auto it = pt.find(virt & ~(abi::kPageSize - 1));
    if (it == pt.end()) return Error::BadAddress;
    if (write && (it->second.prot & abi::kProtWrite) == 0) return Error::BadAddress;
    return it->second.frame;
}
// Physical addresses are host addresses.
void* Cpu::frame_to_kernel(uint64_t frame) {
    return reinterpret_cast<void*>(frame);
}
void Cpu::zero_frame(uint64_t frame) {
    ++FakeCpu::frames_zeroed;
    if (!FakeCpu::irq_enabled) ++FakeCpu::frames_zeroed_irqs_off;
    std::memset(frame_to_kernel(frame), 0, abi::kPageSize);
}

namespace {
void* g_kernel_stacks[kKernelStackSlots];  // each slot's block, while mapped
}

Result<void*> Cpu::kernel_stack_map(uint32_t slot) {
    if (slot >= kKernelStackSlots || g_kernel_stacks[slot] != nullptr) {
        std::fprintf(stderr, "fake cpu: kernel stack slot %u mapped twice\n", slot);
        std::abort();
    }
    void* block = kalloc(kKernelStackSize, 16);
    if (block == nullptr) return Error::OutOfMemory;
    ++FakeCpu::kernel_stack_maps;
    g_kernel_stacks[slot] = block;
    return static_cast<char*>(block) + kKernelStackSize;
}

void Cpu::kernel_stacks_unmap(const uint32_t* slots, size_t count) {
    if (count == 0 || count > kKernelStackCacheSize || held_locks() != 0) {
        std::fprintf(stderr, "fake cpu: %zu kernel stacks unmapped at once, locks %#lx\n", count,
                     static_cast<unsigned long>(held_locks()));
        std::abort();
    }
    FakeCpu::kernel_stack_unmaps.emplace_back(slots, slots + count);
    for (size_t i = 0; i < count; ++i) {
        uint32_t slot = slots[i];
        if (slot >= kKernelStackSlots || g_kernel_stacks[slot] == nullptr) {
            std::fprintf(stderr, "fake cpu: kernel stack slot %u not mapped\n", slot);
            std::abort();
        }
        kfree(g_kernel_stacks[slot]);
        g_kernel_stacks[slot] = nullptr;
    }
}

size_t FakeCpu::user_spaces() {
    return spaces().size();
}

size_t FakeCpu::user_pages(uint64_t root) {
    auto it = spaces().find(root);
    return it == spaces().end() ? 0 : it->second.size();
}

void Cpu::init_context(Context& ctx, void* stack_top, void (*entry)(void*), void* arg) {
    ctx.stack_top = stack_top;
    ctx.entry = entry;
    ctx.arg = arg;
}

void Cpu::switch_context(Context& from, Context& to) {
    if (FakeCpu::on_switch != nullptr) FakeCpu::on_switch(from, to);
    FakeCpu::switches.push_back({&from, &to});
    from.gave_stack_up = false;
    if (&from == FakeCpu::no_return_from) throw FakeCpu::NoReturn{};
}

void Cpu::load_context(Context& from, Context& to) {
    FakeCpu::switches.push_back({&from, &to});
    from.gave_stack_up = true;
}

void Cpu::switch_context_leaving_stack(Context& from, Context& to) {
    // `from` never returns here: its frames unwind back to the test, which
    // then plays its resumption (mk_resume_at_frame) when it runs again.
    FakeCpu::switches.push_back({&from, &to});
    from.gave_stack_up = true;
    ++FakeCpu::stacks_left;
    throw FakeCpu::NoReturn{};
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
    if (enabled && g_this_cpu != nullptr && g_this_cpu->held_locks.count() > 0) {
        std::fprintf(stderr, "fake cpu: interrupts enabled with %u lock(s) held\n",
                     g_this_cpu->held_locks.count());
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

void Cpu::retire_context(Context&) {
    ++FakeCpu::retired;
}

void Cpu::unload_context(Context& ctx) {
    FakeCpu::unloaded.emplace_back(&ctx, cpu_index());
}

void Cpu::flush_user_tlb(uint64_t root, uint64_t virt, size_t pages) {
    uint64_t generation = FakeCpu::tlb_watched != nullptr ? FakeCpu::tlb_watched->generation() : 0;
    FakeCpu::tlb_flushes.push_back({root, virt, pages, frame_allocator().free_count(), generation});
}

void Cpu::notify_cpu(uint32_t index) {
    FakeCpu::notified.push_back(index);
}

void Cpu::set_this_cpu(PerCpu* cpu) {
    g_this_cpu = cpu;
}
PerCpu* Cpu::this_cpu() {
    return g_this_cpu;
}
uint32_t Cpu::cpu_index() {
    return g_this_cpu != nullptr ? g_this_cpu->index : 0;
}
uint64_t Cpu::held_locks() {
    return g_this_cpu != nullptr ? g_this_cpu->held_locks.mask : 0;
}
void Cpu::set_held_locks(uint64_t mask) {
    if (g_this_cpu != nullptr) g_this_cpu->held_locks.mask = mask;
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
