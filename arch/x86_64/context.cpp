// Thread contexts and the way into and out of user mode: the context
// switch's extra work for user threads (entry stack, CR3, FS base, lazy FPU), the
// syscall MSRs, SMEP/SMAP, and user address spaces (docs/syscalls.md).
#include "context.hpp"

#include "cpu.hpp"
#include "frame_allocator.hpp"
#include "log.hpp"
#include "memory.hpp"
#include "mk/abi.hpp"
#include "panic.hpp"
#include "pcid.hpp"
#include "percpu.hpp"
#include "smp.hpp"
#include "syscall/entry.hpp"
#include "syscall/fastpath_layout.hpp"
#include "trap.hpp"
#include "x86.hpp"

extern "C" {
void arch_thread_trampoline();
void arch_switch_context(uint64_t* from_rsp, uint64_t to_rsp);
[[noreturn]] void arch_leave_to_stack(uint64_t to_rsp);
void arch_resume_at_frame();
void syscall_entry();
[[noreturn]] void arch_enter_user(uint64_t rip, uint64_t rsp, uint64_t arg, uint64_t stack_top);
[[noreturn]] void arch_bad_user_return();
}

namespace mk::x86 {

namespace {

// syscall.S's PERCPU_SCHED_LOCK (syscall/fastpath_layout.hpp, which
// fastpath.cpp checks): where this CPU's scheduler lock is in the per-CPU
// area (its word first: SpinLock's word is its first member).
constexpr size_t kPerCpuSchedLockOffset = PERCPU_SCHED_LOCK;

constexpr uint32_t kMsrStar = 0xC0000081;
constexpr uint32_t kMsrLstar = 0xC0000082;
constexpr uint32_t kMsrSfmask = 0xC0000084;
constexpr uint32_t kMsrFsBase = 0xC0000100;
constexpr uint64_t kEferSce = 1u << 0;
constexpr uint64_t kRflagsIf = 1u << 9;
// TF IF DF NT AC: the kernel runs with none of them.
constexpr uint64_t kRflagsMasked = (1u << 8) | (1u << 9) | (1u << 10) | (1u << 14) | (1u << 18);
constexpr uint64_t kCr0Mp = 1u << 1;
constexpr uint64_t kCr0Em = 1u << 2;
constexpr uint64_t kCr4Osfxsr = 1u << 9;
constexpr uint64_t kCr4Osxmmexcpt = 1u << 10;
constexpr uint64_t kCr4Smep = 1u << 20;
constexpr uint64_t kCr4Smap = 1u << 21;
constexpr size_t kFxsaveSize = 512;

// This CPU's switch state.
Cpu::SwitchState& sw() {
    return Cpu::switch_state();
}

AddressSpace g_kernel_space;
// Each CPU's PCIDs, by PerCpu::index (used with CR4.PCIDE only); touched
// by its CPU alone, with interrupts off.
// (A cache line each: every address-space switch writes its CPU's.)
struct alignas(64) CpuPcids {
    PcidTable table;
};
CpuPcids g_pcid_tables[mk::kMaxCpus];
bool g_pcid_on = false;  // set by init_user_mode() on the boot CPU, before the others start
uint64_t g_cr0_ts = 0;   // CR0 with TS, as init_user_mode() sets it on the boot CPU
PagingFeatures g_features{};
FrameAllocator* g_frames = nullptr;

Result<uint64_t> table_alloc(void*) {
    return g_frames->alloc();
}
void frame_free(void*, uint64_t phys) {
    g_frames->free(phys);
}

AddressSpace space_of(uint64_t root) {
    return AddressSpace::from_root({table_alloc, nullptr, frame_free}, g_features, root);
}

void set_ts(bool on) {
    Cpu::set_fpu_trap(on);
}

PcidTable& pcid_table_here() {
    return g_pcid_tables[Cpu::cpu_index()].table;
}

bool cpu_offers_pcid() {
    return (cpuid(1).ecx & (1u << 17)) != 0;
}

// Sets CR4.PCIDE on this CPU, whose CR3 holds the kernel's tables with
// PCID 0: the SDM makes setting it with CR3[11:0] nonzero a #GP.
void enable_pcid_here() {
    MK_ASSERT(read_cr3() == g_kernel_space.root());
    write_cr4(read_cr4() | kCr4Pcide);
    sw().pcid_on = true;
}

// This CPU loads the kernel's tables (PCID 0, its non-global entries
// flushed) and remembers it. Interrupts off. CR3 before loaded_root: a
// shootdown of the root it leaves may still count this CPU, never miss it.
void load_kernel_root() {
    Cpu::SwitchState& s = sw();
    write_cr3(g_kernel_space.root());
    s.loaded_root = g_kernel_space.root();
    if (s.pcid_on) pcid_table_here().load_kernel();
}

}  // namespace

void init_entry_msrs() {
    // The syscall entry: CS/SS for the kernel from STAR[47:32], for user mode
    // SYSRET takes STAR[63:48] + 16 (code) and + 8 (data).
    wrmsr(kMsrEfer, rdmsr(kMsrEfer) | kEferSce);
    wrmsr(kMsrStar, (uint64_t(kKernelData & ~3) << 48) | (uint64_t(kKernelCode) << 32));
    wrmsr(kMsrLstar, reinterpret_cast<uint64_t>(&syscall_entry));
    wrmsr(kMsrSfmask, kRflagsMasked);
    wrmsr(kMsrKernelGsBase, 0);  // the user's GS base
    wrmsr(kMsrFsBase, 0);        // what sw().loaded_fs_key (null) says
}

UserModeFeatures init_user_mode(const AddressSpace& kernel, PagingFeatures features,
                                FrameAllocator& frames, bool pcid_allowed) {
    g_kernel_space = kernel;
    g_features = features;
    g_frames = &frames;
    sw().loaded_root = kernel.root();

    init_entry_msrs();
    MK_ASSERT(
        reinterpret_cast<char*>(&mk::this_cpu().entry) - reinterpret_cast<char*>(&this_cpu()) == 8);
    // The syscall stub's fast exits release this CPU's scheduler lock by
    // clearing the first byte of its word, at its offset in the per-CPU
    // area (syscall.S, PERCPU_SCHED_LOCK).
    SpinLock& sched_lock = mk::this_cpu().scheduler.lock();
    MK_ASSERT(reinterpret_cast<char*>(sched_lock.word()) -
                  reinterpret_cast<char*>(&mk::this_cpu()) ==
              kPerCpuSchedLockOffset);
    // The entry stub refuses syscall numbers itself (syscall.S).
    static_assert(uint64_t(abi::Sys::Count) == 21 && uint64_t(abi::Err::BadSyscall) == 14 &&
                      uint64_t(abi::Sys::Recv) == 3 && uint64_t(abi::Sys::Reply) == 4 &&
                      uint64_t(abi::Sys::ReplySave) == 5,
                  "syscall.S's SYS_COUNT, ERR_BAD_SYSCALL, SYS_RECV, SYS_REPLY, SYS_REPLY_SAVE");

    // SSE for user code (the kernel itself never touches the FPU), with
    // lazy switching: CR0.TS makes the first FPU instruction trap.
    // Kept for set_fpu_trap(), which writes it with TS or clears TS: CR0
    // changes in nothing else from here on.
    uint64_t cr0 = ((read_cr0() & ~kCr0Em) | kCr0Mp) & ~Cpu::kCr0Ts;
    g_cr0_ts = cr0 | Cpu::kCr0Ts;
    sw().cr0_ts = g_cr0_ts;
    sw().ts_set = false;
    write_cr0(cr0);
    write_cr4(read_cr4() | kCr4Osfxsr | kCr4Osxmmexcpt);

    UserModeFeatures f{};
    CpuidResult leaf0 = cpuid(0);
    if (leaf0.eax >= 7) {
        CpuidResult l7 = cpuid(7, 0);
        f.smep = (l7.ebx & (1u << 7)) != 0;
        f.smap = (l7.ebx & (1u << 20)) != 0;
    }
    // The kernel never touches user memory through user addresses (it reads
    // user pages through the direct map), so SMAP never needs lifting.
    uint64_t cr4 = read_cr4();
    if (f.smep) cr4 |= kCr4Smep;
    if (f.smap) cr4 |= kCr4Smap;
    write_cr4(cr4);
    f.pcid_offered = cpu_offers_pcid();
    // With PCIDs, a kernel stack's unmap relies on its global entries
    // (invlpg drops them in every PCID): no PCIDs without global pages
    // (there is no such CPU that we know of).
    f.pcid = f.pcid_offered && pcid_allowed && features.global_pages;
    if (f.pcid) {
        g_pcid_on = true;
        enable_pcid_here();
    }
    return f;
}

void init_user_mode_here() {
    // The trampoline gave this CPU the boot CPU's CR0 (without TS) and CR4,
    // and the kernel's page tables.
    Cpu::SwitchState& s = sw();
    s.loaded_root = read_cr3() & pte::kAddressMask;
    s.cr0_ts = g_cr0_ts;
    s.ts_set = false;
    s.fpu_owner = nullptr;
    s.loaded_fs_key = nullptr;
    write_cr0(g_cr0_ts & ~Cpu::kCr0Ts);
    init_entry_msrs();
    // The trampoline left CR4.PCIDE off (smp.cpp); every CPU uses PCIDs or
    // none, since every CPU's switch code follows the one g_pcid_on.
    if (g_pcid_on) {
        if (!cpu_offers_pcid())
            MK_PANIC("cpu %u: no PCID, which the boot CPU has", Cpu::cpu_index());
        enable_pcid_here();
    }
}

// #NM: the current thread's first FPU instruction since it was switched in.
void fpu_trap() {
    Cpu::Context& cur = this_cpu().scheduler.current()->context;
    if (cur.fpu == nullptr)
        MK_PANIC("FPU used by kernel thread %s", this_cpu().scheduler.current()->name());
    set_ts(false);
    if (sw().fpu_owner == &cur) return;
    if (sw().fpu_owner != nullptr) {
        asm volatile("fxsave64 (%0)" ::"r"(sw().fpu_owner->fpu) : "memory");
    }
    // A thread's first use loads the clean image init_user_context wrote:
    // every register zeroed, so nothing of the last owner shows through.
    asm volatile("fxrstor64 (%0)" ::"r"(cur.fpu) : "memory");
    cur.fpu_used = true;
    sw().fpu_owner = &cur;
}

// --- TLB shootdown (docs/smp.md, "Address spaces on several CPUs") ---
//
// Without PCIDs, a CPU caches translations of a user address space only
// while its CR3 holds that space's root: every CR3 write drops the user
// half's entries. So the CPUs to ask after a change are those whose
// SwitchState::loaded_root is the root, which each CPU writes before its
// CR3 (a serializing write): a CPU that loads the root after the initiator
// read its loaded_root walks the tables as they are now.
//
// With PCIDs, a CPU that switched away keeps the space's entries under its
// PCID. The unmap bumps the space's generation (TlbSpace::invalidate)
// before the shootdown reads the loaded_roots, and a CPU that loads the
// space writes loaded_root with a full barrier before it reads the
// generation (load_root_with_pcid): so either the shootdown sees the CPU
// (which then invalidates, in the PCID it runs the space with) or the CPU
// sees the new generation (and its CR3 load flushes that PCID). A CPU that
// had switched away again before it served a request keeps stale entries
// under a PCID whose slot records the old generation: flushed at its next
// load of the space.

namespace {

// One CPU's request to the others, by PerCpu::index: drop the translations
// of `root` in [virt, virt + pages pages), or with pages 0 stop using
// `root` (it is about to be freed); with root kEveryRoot, those of the
// kernel stacks of the `stack_count` slots at `stacks` (in the
// initiator's memory, which it keeps until every CPU has answered), asked
// of every CPU. Written by its CPU alone, which waits until `pending` is 0
// before it writes it again.
struct TlbRequest {
    uint64_t root = 0;
    uint64_t virt = 0;
    uint64_t pages = 0;
    const uint32_t* stacks = nullptr;
    uint32_t stack_count = 0;
    uint32_t pending = 0;  // the CPUs yet to act on it, a bit each
};
TlbRequest g_tlb_requests[mk::kMaxCpus];

// More pages than this: one CR3 reload rather than an invlpg each.
constexpr uint64_t kInvlpgMax = 32;
// No page-table root is this (roots are page-aligned physical addresses):
// a request about the kernel half, which every address space shares.
constexpr uint64_t kEveryRoot = ~uint64_t{0};

void flush_here(const TlbRequest& r) {
    const uint64_t root = r.root, virt = r.virt, pages = r.pages;
    Cpu::SwitchState& s = sw();
    if (root == kEveryRoot) {
        // Kernel stacks are global pages (with PCIDs, always: see
        // init_user_mode), which invlpg drops whatever the PCID; without
        // global pages and PCIDs, it drops the only copy there is.
        for (uint32_t n = 0; n < r.stack_count; ++n) {
            const uint64_t bottom = kernel_stack_bottom(r.stacks[n]);
            for (uint64_t i = 0; i < kKernelStackSize / kPageSize; ++i)
                asm volatile("invlpg (%0)" ::"r"(bottom + i * kPageSize) : "memory");
        }
        return;
    }
    if (s.loaded_root != root) return;
    if (pages == 0) {
        // With PCIDs, the space's entries stay under its PCID, unreachable:
        // its slot names the space's id, which no other space will have,
        // so the PCID is flushed when it is given to another.
        load_kernel_root();
    } else if (pages > kInvlpgMax) {
        // Without bit 63: the PCID's entries go (the current one: this CPU
        // runs `root`), paging-structure caches included.
        write_cr3(s.pcid_on ? PcidTable::cr3(root, {pcid_table_here().current(), true}) : root);
    } else {
        // invlpg acts on the current PCID, the one this CPU runs `root` with.
        for (uint64_t i = 0; i < pages; ++i)
            asm volatile("invlpg (%0)" ::"r"(virt + i * kPageSize) : "memory");
    }
}

// Acts on every request addressed to this CPU (interrupts off).
void serve_tlb_requests() {
    uint32_t me = 1u << Cpu::cpu_index();
    for (TlbRequest& r : g_tlb_requests) {
        if ((__atomic_load_n(&r.pending, __ATOMIC_ACQUIRE) & me) == 0) continue;
        flush_here(r);
        __atomic_fetch_and(&r.pending, ~me, __ATOMIC_RELEASE);
    }
}

// flush_here() on every CPU that has `root` loaded, this one included;
// returns once all have. The others are interrupted (kVectorTlb) and this
// CPU waits for them with interrupts off, acting meanwhile on what they
// ask of it: two CPUs shooting at each other both go on. A CPU spinning
// on a lock with interrupts off would not answer, so the caller holds
// none: every lock holder finishes without waiting for a shootdown.
void shoot_down(const TlbRequest& what) {
    MK_ASSERT(!in_irq() && Cpu::held_locks() == 0);
    const uint64_t root = what.root;
    bool was = Cpu::save_and_disable_interrupts();
    uint32_t self = Cpu::cpu_index();
    flush_here(what);
    // The page-table writes before the reads of who has the root loaded
    // (which pairs with the serializing CR3 write after loaded_root).
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint32_t targets = 0;
    for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
        PerCpu* c = g_cpu_table.cpus[i];
        if (i == self || c == nullptr) continue;
        if (root == kEveryRoot || __atomic_load_n(&c->arch.loaded_root, __ATOMIC_RELAXED) == root)
            targets |= 1u << i;
    }
    if (targets != 0) {
        TlbRequest& r = g_tlb_requests[self];
        r.root = root;
        r.virt = what.virt;
        r.pages = what.pages;
        r.stacks = what.stacks;
        r.stack_count = what.stack_count;
        __atomic_store_n(&r.pending, targets, __ATOMIC_RELEASE);
        for (uint32_t i = 0; i < mk::kMaxCpus; ++i) {
            if ((targets & (1u << i)) != 0 && !send_ipi(i, kVectorTlb))
                MK_PANIC("TLB shootdown: no interrupt reached cpu %u", i);
        }
        while (__atomic_load_n(&r.pending, __ATOMIC_ACQUIRE) != 0) {
            serve_tlb_requests();
            __builtin_ia32_pause();
        }
    }
    Cpu::restore_interrupts(was);
}

}  // namespace

void tlb_trap() {
    serve_tlb_requests();
}

bool kernel_stack_slot_of(uint64_t addr, uint32_t& slot) {
    if (addr < kKernelStackBase || addr - kKernelStackBase >= kKernelStackRangeSize) return false;
    slot = uint32_t((addr - kKernelStackBase) / kKernelStackSlotSize);
    return true;
}

bool kernel_stack_guard_hit(uint64_t addr, uint32_t& slot) {
    return kernel_stack_slot_of(addr, slot) &&
           (addr - kKernelStackBase) % kKernelStackSlotSize < kKernelStackGuardSize;
}

}  // namespace mk::x86

namespace mk {

using namespace x86;

void Cpu::flush_user_tlb(uint64_t root, uint64_t virt, size_t pages) {
    if (pages != 0) shoot_down({.root = root, .virt = virt, .pages = pages});
}

void Cpu::init_context(Context& ctx, void* stack_top, void (*entry)(void*), void* arg) {
    auto* sp = static_cast<uint64_t*>(stack_top);
    *--sp = 0;  // keeps the frame below 16-byte aligned like a call would
    *--sp = reinterpret_cast<uint64_t>(&arch_thread_trampoline);  // ret target
    *--sp = 0;                                                    // rbp
    *--sp = 0;                                                    // rbx
    *--sp = reinterpret_cast<uint64_t>(entry);                    // r12
    *--sp = reinterpret_cast<uint64_t>(arg);                      // r13
    *--sp = 0;                                                    // r14
    *--sp = 0;                                                    // r15
    ctx.rsp = reinterpret_cast<uint64_t>(sp);
    ctx.kernel_stack_top = reinterpret_cast<uint64_t>(stack_top);
}

namespace {

// The stack pointer arch_switch_context() resumes `to` at. A thread that
// gave its stack up (Context::rsp 0) resumes at its TrapFrame: a switch
// frame is built just below it (six callee-saved slots, whose values do
// not matter, and a return address) that returns into arch_resume_at_frame
// with rsp at the TrapFrame. Built only now, when nothing runs on that
// stack: while the thread blocked, its own code still used the slots.
uint64_t resume_stack(const Cpu::Context& to) {
    if (to.rsp != 0) return to.rsp;
    auto* frame = reinterpret_cast<uint64_t*>(to.kernel_stack_top - sizeof(TrapFrame));
    frame[-1] = reinterpret_cast<uint64_t>(&arch_resume_at_frame);
    return reinterpret_cast<uint64_t>(frame - 7);
}

// The switches with PCIDs on whose address space changes (load_state()
// returned false): out of line, so that the switches without keep their
// tail call and need no frame.
[[gnu::noinline]] void switch_context_with_pcid(Cpu::Context& from, Cpu::Context& to) {
    Cpu::load_state_with_pcid(to);
    arch_switch_context(&from.rsp, resume_stack(to));
}

// The end of a switch that leaves `from`'s stack: nothing of it is saved.
// The CPU goes straight to `to`'s switch frame, or, for a thread that gave
// its stack up too, to its TrapFrame and arch_resume_at_frame (no switch
// frame built to return there).
[[noreturn]] void leave_to(Cpu::Context& from, const Cpu::Context& to) {
    from.rsp = 0;
    if (Cpu::resumes_at_frame(to)) arch_leave_to_frame(to.kernel_stack_top - sizeof(TrapFrame));
    arch_leave_to_stack(to.rsp);
}

[[noreturn, gnu::noinline]] void switch_context_leaving_stack_with_pcid(Cpu::Context& from,
                                                                        Cpu::Context& to) {
    Cpu::load_state_with_pcid(to);
    leave_to(from, to);
}

}  // namespace

void Cpu::load_state_with_pcid(const Context& to) {
    load_root_with_pcid(to);
    // The rest: CR3 holds `to`'s root now.
    bool done = load_state(to);
    MK_ASSERT(done);
}

void Cpu::switch_context(Context& from, Context& to) {
    if (!load_state(to)) [[unlikely]]
        return switch_context_with_pcid(from, to);
    arch_switch_context(&from.rsp, resume_stack(to));
}

void Cpu::switch_context_leaving_stack(Context& from, Context& to) {
    if (!load_state(to)) [[unlikely]]
        switch_context_leaving_stack_with_pcid(from, to);
    leave_to(from, to);
}

Error Cpu::init_user_context(Context& ctx, uint64_t root, const TlbSpace& space) {
    void* area = kalloc(kFxsaveSize, 64);
    if (area == nullptr) return Error::OutOfMemory;
    // The FXSAVE image of a reset FPU: x87 control word 0x37F (all
    // exceptions masked), MXCSR 0x1F80, every register zero.
    __builtin_memset(area, 0, kFxsaveSize);
    auto* image = static_cast<uint8_t*>(area);
    uint16_t fcw = 0x37F;
    uint32_t mxcsr = 0x1F80;
    __builtin_memcpy(image + 0, &fcw, sizeof fcw);
    __builtin_memcpy(image + 24, &mxcsr, sizeof mxcsr);
    ctx.fpu = area;
    ctx.fpu_used = false;
    ctx.root = root;
    ctx.space = &space;
    ctx.fs_base = 0;
    ctx.fs_key = nullptr;
    return Error::None;
}

void Cpu::retire_context(Context& ctx) {
    // Under the scheduler lock, interrupts off.
    Cpu::SwitchState& s = sw();
    if (s.fpu_owner == &ctx) s.fpu_owner = nullptr;
    if (s.loaded_fs_key == &ctx) s.loaded_fs_key = &kStaleFsKey;
    if (ctx.root != 0 && s.loaded_root == ctx.root) load_kernel_root();
}

void Cpu::load_root_with_pcid(const Context& to) {
    SwitchState& s = sw();
    // Interrupts off (a switch). loaded_root first, as without PCIDs, and
    // an exchange: a full barrier before the generation is read (see the
    // TLB shootdown above).
    __atomic_exchange_n(&s.loaded_root, to.root, __ATOMIC_SEQ_CST);
    PcidTable::Load l = pcid_table_here().load(to.space->id(), to.space->generation());
    write_cr3(PcidTable::cr3(to.root, l));
}

void Cpu::unload_context(Context& ctx) {
    // Under the scheduler lock, interrupts off, on the CPU the thread last
    // ran on; it is not the current thread.
    SwitchState& s = sw();
    if (s.fpu_owner == &ctx) {
        set_ts(false);
        asm volatile("fxsave64 (%0)" ::"r"(ctx.fpu) : "memory");
        s.fpu_owner = nullptr;
        set_ts(true);  // nobody's state is in the registers: the next use traps
    }
    if (s.loaded_fs_key == &ctx) s.loaded_fs_key = &kStaleFsKey;
}

void Cpu::release_context(Context& ctx) {
    // The CPU it ended on forgot it when it left it (retire_context). This
    // one may be another, or it may never have run (a refused thread): it
    // drops what it may still point at, but never CR3, which may be loaded
    // for a live thread of the same process.
    bool was = save_and_disable_interrupts();  // no #NM on this CPU in between
    SwitchState& s = sw();
    if (s.fpu_owner == &ctx) s.fpu_owner = nullptr;
    if (s.loaded_fs_key == &ctx) s.loaded_fs_key = &kStaleFsKey;
    restore_interrupts(was);
    kfree(ctx.fpu);
    ctx.fpu = nullptr;
    ctx.root = 0;
}

void Cpu::load_fs_base(const Context& ctx) {
    x86::wrmsr(x86::kMsrFsBase, ctx.fs_base);
    sw().loaded_fs_key = ctx.fs_key;
}

// Always written: the thread may have cleared the FS base behind the
// kernel's back (a selector load) since it was last loaded for it.
void Cpu::set_user_fs_base(Context& current, uint64_t base) {
    bool was = save_and_disable_interrupts();  // the MSR and sw() agree at every switch
    current.fs_base = base;
    current.fs_key = base == 0 ? nullptr : &current;
    load_fs_base(current);
    restore_interrupts(was);
}

void Cpu::enter_user(uint64_t rip, uint64_t rsp, uint64_t arg) {
    // The frame is built by arch_enter_user on the top of this thread's
    // kernel stack, after it has left the frames below (ours among them).
    arch_enter_user(rip, rsp, arg, mk::this_cpu().entry.kernel_stack_top);
}

// --- Kernel stacks (docs/memory.md, "Kernel stacks") ---
//
// The leaf entries of a slot are written only by whoever holds the slot
// (kernel_stack.cpp hands each out once), in page tables made at boot
// and shared by every address space: no lock.

// A stack's pages are one block of the kernel heap (page-aligned, in the
// direct map, so physically contiguous), mapped a second time in the slot:
// memory the heap grew into serves stacks as it serves every other kernel
// object (the heap keeps what it grows into; frames taken for stacks alone
// would run out once it had).
namespace {

constexpr uint64_t kStackPages = kKernelStackSize / kPageSize;
// A slot's stack pages are in one page table (slots are aligned to their
// size, which divides the 2 MiB a page table maps): their leaf entries
// follow each other, found with one walk.
static_assert(kKernelStackBase % (512 * kPageSize) == 0 &&
              (512 * kPageSize) % kKernelStackSlotSize == 0);

uint64_t* stack_leaves(uint32_t slot) {
    MK_ASSERT(slot < kKernelStackSlots);
    uint64_t* leaf = g_kernel_space.leaf_pointer(kernel_stack_bottom(slot));
    MK_ASSERT(leaf != nullptr);
    return leaf;
}

}  // namespace

Result<void*> Cpu::kernel_stack_map(uint32_t slot) {
    uint64_t* leaves = stack_leaves(slot);
    void* memory = kalloc(kKernelStackSize, kPageSize);
    if (memory == nullptr) return Error::OutOfMemory;
    const uint64_t phys = virt_to_phys(memory);
    uint64_t flags = pte::kPresent | pte::kWritable;
    if (g_features.nx) flags |= pte::kNoExecute;
    if (g_features.global_pages) flags |= pte::kGlobal;
    for (uint64_t i = 0; i < kStackPages; ++i) {
        MK_ASSERT(leaves[i] == 0);
        __atomic_store_n(&leaves[i], (phys + i * kPageSize) | flags, __ATOMIC_RELEASE);
    }
    return reinterpret_cast<void*>(kernel_stack_bottom(slot) + kKernelStackSize);
}

void Cpu::kernel_stacks_unmap(const uint32_t* slots, size_t count) {
    MK_ASSERT(count <= kKernelStackCacheSize);
    void* memory[kKernelStackCacheSize];
    for (size_t n = 0; n < count; ++n) {
        uint64_t* leaves = stack_leaves(slots[n]);
        const uint64_t phys = leaves[0] & pte::kAddressMask;
        for (uint64_t i = 0; i < kStackPages; ++i) {
            MK_ASSERT((leaves[i] & pte::kPresent) != 0 &&
                      (leaves[i] & pte::kAddressMask) == phys + i * kPageSize);
            __atomic_store_n(&leaves[i], uint64_t{0}, __ATOMIC_RELAXED);
        }
        memory[n] = phys_to_virt(phys);
    }
    // Every CPU may hold a translation (one that ran a thread there, or a
    // speculative walk): all forget them before the memory can be reused,
    // and before the slots can be mapped again. One request for them all.
    shoot_down({.root = kEveryRoot, .stacks = slots, .stack_count = uint32_t(count)});
    for (size_t n = 0; n < count; ++n) kfree(memory[n]);
}

Result<uint64_t> Cpu::user_space_create() {
    Result<AddressSpace> as =
        AddressSpace::create_user({table_alloc, nullptr, frame_free}, g_features, g_kernel_space);
    if (!as) return as.error();
    return as.value().root();
}

void Cpu::user_space_destroy(uint64_t root, bool ran) {
    if (root == 0) return;
    if (ran) {
        // Every thread of the process has ended, so no CPU loads the root
        // again; a CPU where one of them ran may still hold it (CR3 changes
        // lazily, and a thread may have moved on from a CPU), and gives it
        // up now: none may walk freed tables, not even speculatively.
        shoot_down({.root = root});
    } else {
        for (uint32_t i = 0, n = cpu_count(); i < n; ++i) {
            PerCpu* c = g_cpu_table.cpus[i];
            MK_ASSERT(c == nullptr ||
                      __atomic_load_n(&c->arch.loaded_root, __ATOMIC_RELAXED) != root);
        }
    }
    AddressSpace as = space_of(root);
    as.destroy_user(frame_free, nullptr);
}

Error Cpu::user_map(uint64_t root, uint64_t virt, uint64_t frame, uint32_t prot) {
    if (virt < abi::kUserBase || virt >= abi::kUserEnd || (virt % kPageSize) != 0) {
        return Error::InvalidArgument;
    }
    if ((prot & abi::kProtWrite) != 0 && (prot & abi::kProtExec) != 0)
        return Error::InvalidArgument;
    uint64_t flags = pte::kUser;
    if ((prot & abi::kProtWrite) != 0) flags |= pte::kWritable;
    if ((prot & abi::kProtExec) == 0) flags |= pte::kNoExecute;
    AddressSpace as = space_of(root);
    if (as.leaf_entry(virt) != 0) return Error::BadState;
    return as.map(virt, frame, flags);
}

Result<uint64_t> Cpu::user_unmap(uint64_t root, uint64_t virt,
                                 void (*retire)(void* ctx, uint64_t frame), void* ctx) {
    if (virt < abi::kUserBase || virt >= abi::kUserEnd) return Error::InvalidArgument;
    AddressSpace as = AddressSpace::from_root({table_alloc, ctx, retire}, g_features, root);
    return as.unmap(virt);
}

Result<uint64_t> Cpu::user_frame(uint64_t root, uint64_t virt, bool write) {
    if (virt < abi::kUserBase || virt >= abi::kUserEnd) return Error::BadAddress;
    uint64_t e = space_of(root).leaf_entry(virt);
    if ((e & pte::kPresent) == 0 || (e & pte::kUser) == 0) return Error::BadAddress;
    if (write && (e & pte::kWritable) == 0) return Error::BadAddress;
    return e & pte::kAddressMask;
}

void* Cpu::frame_to_kernel(uint64_t frame) {
    return phys_to_virt(frame);
}

void Cpu::zero_frame(uint64_t frame) {
    __builtin_memset(phys_to_virt(frame), 0, kPageSize);
}

}  // namespace mk

extern "C" void arch_bad_user_return() {
    mk::log("user: thread %s: return to a RIP outside the user half refused\n",
            mk::this_cpu().scheduler.current()->name());
    mk::this_cpu().scheduler.exit_current();
}
