#include "process.hpp"

#include "kernel.hpp"
#include "memory.hpp"
#include "mk/abi.hpp"
#include "panic.hpp"
#include "percpu.hpp"
#include "thread.hpp"

namespace mk {

namespace {

uint64_t g_next_process_id = 1;  // atomic: Process::create
Process::DeathHook g_death_hook = nullptr;

bool user_range_ok(uint64_t virt, size_t pages) {
    uint64_t bytes = uint64_t(pages) * abi::kPageSize;
    return (virt % abi::kPageSize) == 0 && virt >= abi::kUserBase && virt < abi::kUserEnd &&
           pages <= (abi::kUserEnd - virt) / abi::kPageSize && bytes != 0;
}

// First entry of a user thread, on its kernel stack.
void user_thread_entry(void*) {
    Thread* t = this_cpu().scheduler.current();
    Cpu::enter_user(t->user_rip, t->user_rsp, t->user_arg);
}

bool prot_ok(uint32_t prot) {
    if ((prot & ~uint32_t(abi::kProtRead | abi::kProtWrite | abi::kProtExec)) != 0) return false;
    return (prot & abi::kProtWrite) == 0 || (prot & abi::kProtExec) == 0;  // W^X
}

// Frames chained through their first words (the next frame's address, 0 at
// the end: frame 0 is never handed out), so that even kMaxPages of them
// need no list besides themselves; those still chained when it goes are
// freed. Frames for a mapping, allocated and zeroed before the
// address-space lock is taken; or frames just unmapped, freed once no CPU
// can reach them any more (Unmapped below).
class FrameChain {
  public:
    FrameChain() = default;
    FrameChain(const FrameChain&) = delete;
    FrameChain& operator=(const FrameChain&) = delete;
    ~FrameChain() {
        while (head_ != 0) frame_allocator().free(take());
    }

    void add(uint64_t frame) {
        *link(frame) = head_;
        head_ = frame;
    }

    // Adds `count` frames. OutOfMemory when the frame allocator runs out
    // (those it gave stay chained).
    Status fill(size_t count) {
        for (size_t i = 0; i < count; ++i) {
            Result<uint64_t> frame = frame_allocator().alloc();
            if (!frame) return Error::OutOfMemory;
            MK_ASSERT(frame.value() != 0);
            Cpu::zero_frame(frame.value());
            add(frame.value());
        }
        return Error::None;
    }

    // A chained frame (all zero again, if it was zeroed).
    uint64_t take() {
        uint64_t frame = head_;
        head_ = *link(frame);
        *link(frame) = 0;
        return frame;
    }

  private:
    static uint64_t* link(uint64_t frame) {
        return static_cast<uint64_t*>(Cpu::frame_to_kernel(frame));
    }

    uint64_t head_ = 0;
};

}  // namespace

// What unmap_locked() took out of an address space: declared before the
// address-space lock's guard, it acts after the lock is dropped, when no
// lock is held (the shootdown waits for the other CPUs): every CPU's TLB
// forgets the range, then the frames are freed, the pages' and the page
// tables' the unmap left empty.
struct Process::Unmapped {
    uint64_t root = 0;
    uint64_t virt = 0;
    size_t pages = 0;
    FrameChain frames;  // destroyed after the body below: freed last

    ~Unmapped() {
        if (pages != 0) Cpu::flush_user_tlb(root, virt, pages);
    }
};

Process::Process(const char* name) : KObject(ObjectType::Process) {
    size_t i = 0;
    for (; name != nullptr && name[i] != '\0' && i + 1 < kNameLength; ++i) name_[i] = name[i];
    name_[i] = '\0';
}

Process::~Process() {
    if (!dead_) {  // never ran a thread
        dead_ = true;
        die(false);
    }
    HandleTable::destroy(handles_);
}

void Process::set_supervisor(Ref<Endpoint> supervisor, uint64_t badge, Notice* notice) {
    MK_ASSERT(!supervisor_ && death_notice_ == nullptr);
    notice->badge = badge;
    supervisor_ = static_cast<Ref<Endpoint>&&>(supervisor);
    death_notice_ = notice;
}

void Process::set_death_hook(DeathHook hook) {
    g_death_hook = hook;
}

void Process::die(bool may_yield) {
    // Handles first: their last-handle notices (a pipe's EOF) are posted
    // before the supervisor hears of the death.
    if (handles_ != nullptr) handles_->clear();
    bool woke = false;
    if (death_notice_ != nullptr) {
        death_notice_->msg = Message{};
        death_notice_->msg.label = abi::kLabelChildDied;
        death_notice_->msg.words[0] = id_;
        death_notice_->msg.words[1] = exit_status_;
        woke = supervisor_->post_notice(death_notice_, may_yield ? Donate::Yes : Donate::No);
        death_notice_ = nullptr;
    }
    supervisor_.reset();
    // Nothing runs in the address space any more; freeing it is most of
    // the work of a death (every page table walked), and nobody waits for
    // it: the supervisor goes first.
    if (woke && may_yield) this_cpu().scheduler.yield_to_donate_target();
    uint64_t root;
    {
        LockGuard guard(space_lock_);
        root = root_;
        root_ = 0;  // from here on, copies and maps find it gone
        mapped_pages_ = 0;
    }
    // No CPU may keep its entries as valid (with PCIDs, its id already
    // matches no later space's: this is for good measure).
    tlb_.invalidate();
    bool ran = may_yield;  // see die()'s comment
    Cpu::user_space_destroy(root, ran);
    if (g_death_hook != nullptr) g_death_hook(*this);
}

Result<Process*> Process::create(const char* name, uint32_t cpu, uint32_t mask) {
    Result<uint64_t> root = Cpu::user_space_create();
    if (!root) return root.error();
    Result<HandleTable*> handles = HandleTable::create();
    Process* p = handles ? knew<Process>(name) : nullptr;
    if (p == nullptr) {
        if (handles) HandleTable::destroy(handles.value());
        Cpu::user_space_destroy(root.value(), false);
        return Error::OutOfMemory;
    }
    p->root_ = root.value();
    p->handles_ = handles.value();
    p->id_ = __atomic_fetch_add(&g_next_process_id, 1, __ATOMIC_RELAXED);
    if (cpu == kAnyCpu) {
        MK_ASSERT(mask == 0);
        p->affinity_ = Scheduler::online_mask();
        p->cpu_ = Scheduler::spawn_home(p->affinity_);
    } else {
        MK_ASSERT(cpu_online(cpu));
        p->cpu_ = cpu;
        p->affinity_ = mask == 0 ? 1u << cpu : mask;
        MK_ASSERT((p->affinity_ & (1u << cpu)) != 0 &&
                  (p->affinity_ & ~Scheduler::online_mask()) == 0);
    }
    return p;
}

void Process::free(Process* p) {
    kdelete(p);
}

Status Process::map_anonymous(uint64_t virt, size_t pages, uint32_t prot) {
    if (!user_range_ok(virt, pages)) return Error::InvalidArgument;
    return map_zeroed(virt, pages, prot).error();
}

Result<uint64_t> Process::map_fresh(size_t pages, uint32_t prot) {
    if (pages == 0 || pages > kMaxPages) return Error::InvalidArgument;
    return map_zeroed(kInMapArea, pages, prot);
}

// In three steps, so that zeroing the frames (up to kMaxPages of them, 64
// MiB) runs with interrupts on: the pages are counted against kMaxPages
// under the lock; the frames are allocated and zeroed without it; then
// they are mapped under it, all or nothing. Between the steps other threads
// of the process may map and unmap, so the last step checks again what
// depends on them: the place (the map area moves on), that nothing is
// mapped there, that the process is alive.
Result<uint64_t> Process::map_zeroed(uint64_t virt, size_t pages, uint32_t prot) {
    if (!prot_ok(prot)) return Error::InvalidArgument;
    uint64_t bytes = uint64_t(pages) * abi::kPageSize;
    {
        LockGuard guard(space_lock_);
        if (root_ == 0) return Error::BadState;
        if (pages > kMaxPages - mapped_pages_ - reserved_pages_) return Error::LimitReached;
        // Refused before the work, if it cannot fit now.
        if (virt == kInMapArea && next_map_ + bytes + abi::kPageSize > kMapEnd) {
            return Error::LimitReached;
        }
        reserved_pages_ += pages;
    }
    // Declared before the guard below: frames left unmapped are freed after
    // the lock is dropped.
    FrameChain frames;
    Status filled = frames.fill(pages);
    Unmapped undone;  // a failed mapping's pages (after the guard: acts once it is gone)

    LockGuard guard(space_lock_);
    reserved_pages_ -= pages;
    if (filled != Error::None) return filled;
    if (root_ == 0) return Error::BadState;
    uint64_t at = virt;
    if (virt == kInMapArea) {
        if (next_map_ + bytes + abi::kPageSize > kMapEnd) return Error::LimitReached;
        at = next_map_;
    }
    for (size_t i = 0; i < pages; ++i) {
        if (Cpu::user_frame(root_, at + i * abi::kPageSize, false)) return Error::BadState;
    }
    for (size_t i = 0; i < pages; ++i) {
        uint64_t frame = frames.take();
        Status st = Cpu::user_map(root_, at + i * abi::kPageSize, frame, prot);
        if (st != Error::None) {  // out of memory for a page table
            frame_allocator().free(frame);
            // Nothing registered there: it was not mapped before. Another
            // thread of the process may have touched the pages already.
            unmap_locked(at, i, undone);
            return st;
        }
        ++mapped_pages_;
    }
    if (virt == kInMapArea) next_map_ = at + bytes + abi::kPageSize;  // the page after it: a guard
    return at;
}

Status Process::unmap(uint64_t virt, size_t pages) {
    if (pages == 0) return Error::None;
    if (!user_range_ok(virt, pages)) return Error::InvalidArgument;
    Unmapped unmapped;  // before the guard: acts once the lock is dropped
    LockGuard guard(space_lock_);
    if (root_ == 0) return Error::None;
    {
        // The list of threads; their registrations are written under the
        // address-space lock, held here (set_ipc_buffer).
        LockGuard threads_guard(threads_lock_);
        for (const Thread& t : threads_) {
            uint64_t b = t.ipc->user_buffer;
            if (b != 0 && b >= virt && (b - virt) / abi::kPageSize < pages) return Error::BadState;
        }
    }
    unmap_locked(virt, pages, unmapped);
    return Error::None;
}

void Process::unmap_locked(uint64_t virt, size_t pages, Unmapped& out) {
    out.root = root_;
    out.virt = virt;
    out.pages = pages;
    for (size_t i = 0; i < pages; ++i) {
        Result<uint64_t> frame = Cpu::user_unmap(
            root_, virt + i * abi::kPageSize,
            [](void* chain, uint64_t table) { static_cast<FrameChain*>(chain)->add(table); },
            &out.frames);
        if (!frame) continue;
        out.frames.add(frame.value());
        --mapped_pages_;
    }
    // After the page-table changes, before the shootdown (Unmapped): a CPU
    // that ran the space and switched away flushes it when it loads it
    // again (microkernel/pcid.hpp).
    tlb_.invalidate();
}

Status Process::set_ipc_buffer(Thread& thread, uint64_t at) {
    // The thread sets its own (the syscall), so no transfer into or out of
    // its buffer runs meanwhile: those run while it waits in an IPC
    // operation, or in its own. The address-space lock keeps unmap() from
    // reading the registration half written.
    MK_ASSERT(thread.process == this);
    LockGuard guard(space_lock_);
    if (at == 0) {
        thread.ipc->buffer = thread.ipc->local_buffer;
        thread.ipc->user_buffer = 0;
        return Error::None;
    }
    if ((at % abi::kPageSize) != 0) return Error::InvalidArgument;
    if (root_ == 0) return Error::BadState;
    Result<uint64_t> frame = Cpu::user_frame(root_, at, true);
    if (!frame) return frame.error();
    thread.ipc->buffer = static_cast<unsigned char*>(Cpu::frame_to_kernel(frame.value()));
    thread.ipc->user_buffer = at;
    return Error::None;
}

Status Process::copy(uint64_t user, void* kernel, size_t length, Access access) const {
    if (length == 0) return Error::None;
    // Held across the copy: no page of the range can be unmapped and reused
    // meanwhile. Copies are short (at most a few KiB).
    LockGuard guard(space_lock_);
    if (root_ == 0) return Error::BadAddress;  // dead: its memory is gone
    if (user < abi::kUserBase || user >= abi::kUserEnd || length > abi::kUserEnd - user) {
        return Error::BadAddress;
    }
    auto* k = static_cast<unsigned char*>(kernel);
    // Check every page first: a refused copy changes nothing.
    uint64_t first = user & ~(abi::kPageSize - 1);
    for (uint64_t page = first; page < user + length; page += abi::kPageSize) {
        Result<uint64_t> f = Cpu::user_frame(root_, page, access == Access::Write);
        if (!f) return f.error();
    }
    while (length > 0) {
        uint64_t offset = user % abi::kPageSize;
        size_t chunk = abi::kPageSize - offset;
        if (chunk > length) chunk = length;
        Result<uint64_t> f = Cpu::user_frame(root_, user - offset, access == Access::Write);
        if (!f) return f.error();
        auto* u = static_cast<unsigned char*>(Cpu::frame_to_kernel(f.value())) + offset;
        if (access == Access::Read) {
            __builtin_memcpy(k, u, chunk);
        } else {
            __builtin_memcpy(u, k, chunk);
        }
        user += chunk;
        k += chunk;
        length -= chunk;
    }
    return Error::None;
}

Status Process::copy_from_user(void* dst, uint64_t src, size_t length) const {
    return copy(src, dst, length, Access::Read);
}

Status Process::copy_to_user(uint64_t dst, const void* src, size_t length) const {
    return copy(dst, const_cast<void*>(src), length, Access::Write);
}

Status Process::load(uint64_t dst, const void* src, size_t length) const {
    return copy(dst, const_cast<void*>(src), length, Access::Load);
}

Result<Thread*> Process::create_thread(const char* name, uint64_t rip, uint64_t rsp, uint64_t arg,
                                       const Thread* creator) {
    if (rip < abi::kUserBase || rip >= abi::kUserEnd) return Error::InvalidArgument;
    Result<Thread*> t = Thread::create(name, user_thread_entry, nullptr);
    if (!t) return t;
    Thread* thread = t.value();
    Status st = Cpu::init_user_context(thread->context, root_, tlb_);
    if (st != Error::None) {
        Thread::destroy(thread);
        return st;
    }
    thread->user_rip = rip;
    thread->user_rsp = rsp;
    thread->user_arg = arg;
    Status refused = Error::None;
    {
        LockGuard list(threads_lock_);
        // The placement's look at each CPU's load (HomeLock).
        LockGuard sched(this_cpu().scheduler.lock());
        if (exiting_) {
            refused = Error::BadState;
        } else if (threads_.size() >= kMaxThreads) {
            refused = Error::LimitReached;
        } else {
            retain();
            thread->process = this;
            thread->handles = handles_;
            threads_.push_back(*thread);
            if (creator != nullptr) {
                Scheduler::place_locked(*thread, creator->affinity, creator->cpu);
            } else {
                Scheduler::set_home_locked(*thread, cpu_, affinity_);
            }
        }
    }
    if (refused != Error::None) {
        Thread::destroy(thread);  // never started; without the lock: it frees memory
        return refused;
    }
    return thread;
}

void Process::remove_thread(Thread& thread) {
    bool last;
    {
        LockGuard guard(threads_lock_);
        threads_.erase(ThreadList::s_iterator_to(thread));
        last = threads_.empty() && !dead_;
        if (last) {
            exiting_ = true;  // the last thread ended without ProcessExit: status 0 then
            dead_ = true;
        }
    }
    if (last) die(true);  // from Thread::destroy(), in the reaper
}

void Process::kill(uint64_t status) {
    Scheduler& sched = this_cpu().scheduler;
    LockGuard list(threads_lock_);
    if (!exiting_) {
        exiting_ = true;
        exit_status_ = status;
    }
    // Each with the lock of the endpoint it waits on, if any (Scheduler::kill).
    for (Thread& t : threads_) {
        if (&t != sched.current()) sched.kill(t);
    }
}

void Process::exit_from_inside(uint64_t status) {
    Scheduler& sched = this_cpu().scheduler;
    MK_ASSERT(sched.current()->process == this);
    kill(status);
    sched.exit_current();
}

}  // namespace mk
