// Process: an address space and the threads that run in it.
//
// A process owns its user half: every frame mapped there was allocated for
// it and is freed with it. The kernel reaches user memory only through the
// copy helpers below, which walk the process's page tables and copy through
// the kernel's direct map: a user pointer is never dereferenced, so a bad
// one is an error (BadAddress), never a kernel fault, and SMAP never needs
// lifting.
#pragma once

#include <cstddef>
#include <cstdint>

#include "endpoint.hpp"
#include "error.hpp"
#include "kobject.hpp"
#include "object/handle_table.hpp"
#include "pcid.hpp"
#include "thread.hpp"

namespace mk {

class Process : public KObject {
  public:
    static constexpr size_t kNameLength = 16;
    // Bounds on what one process may hold (docs/syscalls.md, "Per-process bounds").
    static constexpr size_t kMaxPages = 16384;  // 64 MiB of mapped user memory
    static constexpr size_t kMaxThreads = 64;
    // Where map_fresh() places memory: above the program, below the stack.
    static constexpr uint64_t kMapBase = 0x0000001000000000;
    static constexpr uint64_t kMapEnd = 0x00007F0000000000;

    // A process with an empty address space and no threads. Its first
    // thread starts on CPU `cpu` (a CPU in the CPU table) and may run on the
    // CPUs of `mask` (in the table, `cpu` among them; 0: `cpu` alone); with
    // kAnyCpu (and no mask) it may run on every CPU in the table and starts
    // on the least loaded, the creating thread not counted, its CPU among
    // equals (Scheduler::spawn_home; docs/smp.md, "Placement").
    static constexpr uint32_t kAnyCpu = abi::kAnyCpu;
    [[nodiscard]] static Result<Process*> create(const char* name, uint32_t cpu = kAnyCpu,
                                                 uint32_t mask = 0);
    // Where its first thread starts, and where it may run (a bit per CPU).
    uint32_t cpu() const { return cpu_; }
    uint32_t affinity() const { return affinity_; }

    const char* name() const { return name_; }
    // Its handles; empty (cleared, refusing new ones) once the process is dead.
    HandleTable& handles() const { return *handles_; }
    uint64_t id() const { return id_; }
    uint64_t root() const { return root_; }
    // Its address space as the PCID policy knows it: a never-reused id and
    // a generation, bumped by every unmap and by its teardown.
    const TlbSpace& tlb() const { return tlb_; }
    size_t mapped_pages() const { return mapped_pages_; }

    // Maps `pages` fresh zeroed frames from `virt` on (page-aligned, in the
    // user half, nothing mapped there yet) with abi::Prot bits. All or
    // nothing: on an error nothing stays mapped. The frames are zeroed
    // before the address-space lock is taken (so with interrupts on, when
    // the caller has them on), and count against kMaxPages from the start:
    // maps in flight in several threads cannot pass it together.
    [[nodiscard]] Status map_anonymous(uint64_t virt, size_t pages, uint32_t prot);
    // The same where the process has nothing yet (the map area, from
    // kMapBase up, an unmapped guard page after each run); returns the
    // address.
    [[nodiscard]] Result<uint64_t> map_fresh(size_t pages, uint32_t prot);
    // Unmaps and frees what is mapped in [virt, virt + pages pages).
    // BadState, and nothing unmapped, when the range holds a page a thread
    // registered as its IPC buffer.
    [[nodiscard]] Status unmap(uint64_t virt, size_t pages);

    // Copies between kernel memory and the user half. copy_from_user needs
    // user-readable pages, copy_to_user user-writable ones; load() writes
    // whatever is mapped (the program loader filling read-only text).
    [[nodiscard]] Status copy_from_user(void* dst, uint64_t src, size_t length) const;
    // Registers the page at `at` (mapped, user-writable, page-aligned) as
    // `thread`'s IPC buffer; 0 unregisters. Atomic with unmap(): a
    // registered page is never freed.
    [[nodiscard]] Status set_ipc_buffer(Thread& thread, uint64_t at);
    [[nodiscard]] Status copy_to_user(uint64_t dst, const void* src, size_t length) const;
    [[nodiscard]] Status load(uint64_t dst, const void* src, size_t length) const;

    // A thread of this process that will enter user mode at `rip` with `rsp`
    // and `arg` in the first argument register; not started. Made by
    // `creator` (a thread of this process), it may run where the creator
    // may and is homed on the least loaded of those CPUs, the creator's
    // among equals (Scheduler::place_locked); else it is the first thread:
    // homed on cpu(), it may run on affinity().
    [[nodiscard]] Result<Thread*> create_thread(const char* name, uint64_t rip, uint64_t rsp,
                                                uint64_t arg, const Thread* creator = nullptr);

    // Ends the process with `status` (abi::status_exited() or a fault or
    // kill status; the first one set is kept): every other thread of it is
    // killed, and so is the calling thread, which must be one of them.
    [[noreturn]] void exit_from_inside(uint64_t status);
    // Ends the process from outside (ProcessKill, a supervisor): every
    // thread is killed (Scheduler::kill) and the status recorded if none
    // was. The process is dead once its last thread has been reaped.
    void kill(uint64_t status);
    // Its supervisor: `notice` (allocated by the caller, owned by the
    // process from now on) goes to `supervisor` with `badge` when the
    // process dies: label abi::kLabelChildDied, words[0] its id, words[1]
    // its status. Once, before it runs.
    void set_supervisor(Ref<Endpoint> supervisor, uint64_t badge, Notice* notice);

    // A thread of it is being destroyed (Thread::destroy), off every CPU for
    // good. After the last one the process is dead: its handles are closed
    // and its memory freed, while the object lives on for its exit status.
    void remove_thread(Thread& thread);
    bool dead() const { return dead_; }
    // Called by every process's death (after its handles and memory went),
    // outside any lock; the kernel uses it to notice init's end.
    using DeathHook = void (*)(Process& process);
    static void set_death_hook(DeathHook hook);
    // Whether it has begun to end, and with what status.
    bool exiting() const { return exiting_; }
    uint64_t exit_status() const { return exit_status_; }

  private:
    MK_KOBJECT_ALLOCATION_FRIENDS;

    explicit Process(const char* name);
    ~Process();
    static void free(Process* p);

    enum class Access { Read, Write, Load };
    Status copy(uint64_t user, void* kernel, size_t length, Access access) const;
    // map_anonymous() at `virt`, or map_fresh() with kInMapArea; returns the address.
    static constexpr uint64_t kInMapArea = 0;
    Result<uint64_t> map_zeroed(uint64_t virt, size_t pages, uint32_t prot);
    // Unmaps what is mapped in the range; the frames go to `out`, which
    // frees them after a TLB shootdown, once the caller dropped the lock.
    struct Unmapped;
    void unmap_locked(uint64_t virt, size_t pages, Unmapped& out);

    // The end of its last thread: handles closed, the supervisor told,
    // address space freed. With `may_yield` (no lock held, thread context:
    // the reaper) the supervisor woken by the notice runs before the
    // address space is freed, so a wait4 returns without waiting for it;
    // without it (~Process, which like every last release runs with no
    // lock held: docs/locking.md) no thread of it ever ran, so no CPU has
    // its address space loaded.
    void die(bool may_yield);

    friend class FastPath;  // checks where syscall.S finds the handle table (fastpath_layout.hpp)

    char name_[kNameLength];
    uint64_t id_ = 0;
    uint32_t cpu_ = 0;       // fixed at create()
    uint32_t affinity_ = 1;  // fixed at create()
    HandleTable* handles_ = nullptr;
    Ref<Endpoint> supervisor_;
    Notice* death_notice_ = nullptr;
    uint64_t root_ = 0;
    TlbSpace tlb_;  // its threads' contexts point at it (Cpu::Context)
    // Lock order: after the handle tables, before the threads lock (which
    // unmap() takes inside it to read the threads' IPC buffer pages, which
    // set_ipc_buffer() writes under this lock).
    mutable SpinLock space_lock_{LockLevel::AddressSpace};
    // --- Guarded by space_lock_ ---
    size_t mapped_pages_ = 0;
    // Pages of mappings whose frames are being allocated and zeroed, outside
    // the lock (map_zeroed): with mapped_pages_, what counts against kMaxPages.
    size_t reserved_pages_ = 0;
    uint64_t next_map_ = kMapBase;  // where map_fresh() looks first

    using ThreadList =
        bi::list<Thread, bi::member_hook<Thread, bi::list_member_hook<>, &Thread::process_hook>>;
    // Lock order: after the address space's (unmap() reads the threads'
    // IPC buffer registrations under both), before an endpoint's lock
    // (kill() ends its threads' waits under both).
    mutable SpinLock threads_lock_{LockLevel::ProcessThreads};
    // --- Guarded by threads_lock_ ---
    ThreadList threads_;  // its live threads (a thread leaves the list when it is destroyed)
    bool exiting_ = false;
    // Its last thread is gone (remove_thread), or it never had one (its
    // destructor): die() runs once.
    bool dead_ = false;
    uint64_t exit_status_ = 0;
};

}  // namespace mk
