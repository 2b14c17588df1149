// In-kernel tests of user mode: ring-3 code (tests/kernel/user_blob.S) in
// its own address space, entering the kernel through `syscall`, the yield
// vector and its faults.
#include "elf.hpp"
#include "kernel.hpp"
#include "ktest.hpp"
#include "log.hpp"
#include "mk/abi.hpp"
#include "percpu.hpp"
#include "process.hpp"
#include "program.hpp"
#include "thread.hpp"

extern "C" {
extern const char user_blob_start[], user_blob_end[];
extern const char user_blob_syscalls[], user_blob_fault[], user_blob_fpu[];
extern const char user_blob_spin[], user_blob_exit[];
}

namespace mk::ktest {

namespace {

constexpr uint64_t kText = 0x400000;
constexpr uint64_t kResults = 0x401000;
constexpr uint64_t kStackTop = 0x7FFFFFF00000;
constexpr size_t kStackPages = 4;

uint64_t entry_of(const char* sym) {
    return kText + uint64_t(sym - user_blob_start);
}

// A process holding the blob, a results page and a stack.
Process* make_process(const char* name) {
    Result<Process*> p = Process::create(name);
    if (!p) return nullptr;
    Process* proc = p.value();
    size_t blob = size_t(user_blob_end - user_blob_start);
    size_t text_pages = (blob + abi::kPageSize - 1) / abi::kPageSize;
    if (proc->map_anonymous(kText, text_pages, abi::kProtRead | abi::kProtExec) != Error::None ||
        proc->load(kText, user_blob_start, blob) != Error::None ||
        proc->map_anonymous(kResults, 1, abi::kProtRead | abi::kProtWrite) != Error::None ||
        proc->map_anonymous(kStackTop - kStackPages * abi::kPageSize, kStackPages,
                            abi::kProtRead | abi::kProtWrite) != Error::None) {
        proc->release();
        return nullptr;
    }
    return proc;
}

Thread* start(Process* p, const char* name, const char* entry, uint64_t arg) {
    Result<Thread*> t = p->create_thread(name, entry_of(entry), kStackTop, arg);
    if (!t) return nullptr;
    if (this_cpu().scheduler.start(*t.value()) != Error::None) return nullptr;
    return t.value();
}

uint64_t result(Process* p, int i) {
    uint64_t v = ~uint64_t{0};
    if (p->copy_from_user(&v, kResults + 8 * uint64_t(i), sizeof v) != Error::None) return v;
    return v;
}

constexpr uint64_t kPatienceTicks = 5000;

// Waits until result i is not 0 (the user code wrote it); false on timeout.
bool wait_result(Process* p, int i) {
    for (uint64_t t = 0; t < kPatienceTicks; ++t) {
        uint64_t v = result(p, i);
        if (v != 0 && v != ~uint64_t{0}) return true;
        sleep_ticks(1);
    }
    return false;
}

// Waits until every thread of p has been reaped (the process is dead).
bool wait_dead(Process* p) {
    for (uint64_t t = 0; t < kPatienceTicks && !p->dead(); ++t) sleep_ticks(1);
    return p->dead();
}

// Kills p, waits for its death and drops the test's reference.
bool end(Process* p) {
    p->kill(abi::kStatusKilled);
    bool dead = wait_dead(p);
    p->release();
    return dead;
}

bool syscall_basics() {
    Process* p = make_process("basics");
    KCHECK(p != nullptr);
    KCHECK(start(p, "main", user_blob_syscalls, 0) != nullptr);
    bool finished = wait_result(p, 6);
    bool ok = result(p, 0) == uint64_t(abi::Err::Ok) &&
              result(p, 1) == uint64_t(abi::Err::BadSyscall) &&
              result(p, 2) == uint64_t(abi::Err::BadAddress) &&
              result(p, 3) == uint64_t(abi::Err::TooLarge) &&
              result(p, 4) == uint64_t(abi::Err::BadAddress) && result(p, 5) == 1 &&
              result(p, 6) == 0x600d;
    for (int k = 0; k < 7; ++k) log("[ktest]   result %d = %#lx\n", k, result(p, k));
    KCHECK(end(p));
    KCHECK(finished);
    KCHECK(ok);
    return true;
}

// Each fault kills only the thread that made it; the kernel and this test go on.
bool faults_kill_only_the_faulter() {
    const uint8_t vectors[6] = {14, 13, 14, 14, 6, 0};
    for (uint64_t kind = 0; kind < 6; ++kind) {
        Process* p = make_process("faulter");
        KCHECK(p != nullptr);
        KCHECK(start(p, "main", user_blob_fault, kind) != nullptr);
        bool dead = wait_dead(p);
        uint64_t status = p->exit_status();
        p->release();
        KCHECK(dead);
        KCHECK(status == abi::status_fault(vectors[kind]));
    }
    return true;
}

// Two threads of one process keep their own SSE registers across yields
// (the FPU state is switched lazily, at the first FPU instruction).
bool fpu_state_is_per_thread() {
    Process* p = make_process("fpu");
    KCHECK(p != nullptr);
    KCHECK(start(p, "even", user_blob_fpu, 0x1234567800000002) != nullptr);
    KCHECK(start(p, "odd", user_blob_fpu, 0x7654321000000001) != nullptr);
    bool finished = wait_result(p, 9) && wait_result(p, 10);
    bool ok = result(p, 9) == 1 && result(p, 10) == 1;
    KCHECK(end(p));
    KCHECK(finished);
    KCHECK(ok);
    return true;
}

// A process's exit ends all its threads, and its memory goes back: the
// frame count is what it was before it existed.
bool process_exit_ends_every_thread() {
    size_t frames_before = frame_allocator().free_count();
    Process* p = make_process("exiter");
    KCHECK(p != nullptr);
    KCHECK(start(p, "spin1", user_blob_spin, 0) != nullptr);
    KCHECK(start(p, "spin2", user_blob_spin, 0) != nullptr);
    KCHECK(start(p, "exit", user_blob_exit, 7) != nullptr);
    bool dead = wait_dead(p);
    uint64_t status = p->exit_status();
    p->release();
    KCHECK(dead);
    KCHECK(status == abi::status_exited(7));
    KCHECK(frame_allocator().free_count() == frames_before);
    return true;
}

// Killed from outside, a process ends with the kill status, whatever its
// threads were doing.
bool kill_from_outside() {
    Process* p = make_process("victim");
    KCHECK(p != nullptr);
    KCHECK(start(p, "spin", user_blob_spin, 0) != nullptr);
    KCHECK(wait_result(p, 11));
    p->kill(abi::kStatusKilled);
    bool dead = wait_dead(p);
    uint64_t status = p->exit_status();
    p->release();
    KCHECK(dead);
    KCHECK(status == abi::kStatusKilled);
    return true;
}

// A real program from a boot module: loaded from its ELF file, run to its exit.
bool program_from_boot_module() {
    Result<ModuleImage> m = boot_module("hello");
    KCHECK(m.ok());
    size_t frames_before = frame_allocator().free_count();
    const char* reason = "";
    Result<Program> prog = load_program("hello", m.value().data, m.value().size, 42, &reason);
    if (!prog) log("[ktest]   load_program: %s (%s)\n", error_name(prog.error()), reason);
    KCHECK(prog.ok());
    Process* p = prog.value().process;
    KCHECK(this_cpu().scheduler.start(*prog.value().thread) == Error::None);
    bool dead = wait_dead(p);
    uint64_t status = p->exit_status();
    p->release();
    KCHECK(dead);
    KCHECK(status == abi::status_exited(0));
    KCHECK(frame_allocator().free_count() == frames_before);
    return true;
}

// Hostile files are refused with a reason and leave nothing behind.
bool bad_programs_are_refused() {
    Result<ModuleImage> m = boot_module("hello");
    KCHECK(m.ok());
    size_t size = m.value().size;
    auto* copy = static_cast<unsigned char*>(kalloc(size, 16));
    KCHECK(copy != nullptr);
    size_t frames_before = frame_allocator().free_count();
    struct Damage {
        size_t offset;
        unsigned char value;
    };
    // e_ident class, e_machine, e_phoff's top byte, the first phdr's p_vaddr top byte.
    const Damage damages[] = {{4, 1}, {18, 3}, {39, 0x80}, {64 + 23, 0xFF}};
    int refused = 0;
    for (const Damage& d : damages) {
        __builtin_memcpy(copy, m.value().data, size);
        copy[d.offset] = d.value;
        const char* reason = "";
        Result<Program> prog = load_program("bad", copy, size, 0, &reason);
        if (!prog) {
            ++refused;
            log("[ktest]   refused: %s\n", reason);
        } else {
            Thread::destroy(prog.value().thread);
            prog.value().process->release();
        }
    }
    // Truncated at every 97th byte: refused exactly when a byte it needs
    // (a header or a segment's file bytes) is cut off.
    Result<ElfImage> full = parse_elf(m.value().data, size);
    KCHECK(full.ok());
    const auto* header = static_cast<const elf64::Header*>(m.value().data);
    size_t needed = header->phoff + size_t(header->phnum) * sizeof(elf64::ProgramHeader);
    for (size_t i = 0; i < full.value().segment_count; ++i) {
        const ElfSegment& seg = full.value().segments[i];
        if (seg.file_offset + seg.file_size > needed) needed = seg.file_offset + seg.file_size;
    }
    for (size_t n = 0; n < size; n += 97) {
        __builtin_memcpy(copy, m.value().data, size);
        Result<Program> prog = load_program("short", copy, n, 0);
        KCHECK(prog.ok() == (n >= needed));
        if (prog) {
            Thread::destroy(prog.value().thread);
            prog.value().process->release();
        }
    }
    kfree(copy);
    KCHECK(refused == 4);
    KCHECK(frame_allocator().free_count() == frames_before);
    return true;
}

// Mapping and unmapping over and over leaves nothing behind: the page
// tables a mapping needed go back with it (else a process could pile them
// up past its memory bound).
bool unmap_frees_page_tables() {
    Process* p = make_process("mapper");
    KCHECK(p != nullptr);
    size_t frames_before = frame_allocator().free_count();
    bool ok = true;
    for (int i = 0; i < 3000 && ok; ++i) {
        Result<uint64_t> at = p->map_fresh(1, abi::kProtRead | abi::kProtWrite);
        ok = at.ok() && p->unmap(at.value(), 1) == Error::None;
    }
    size_t frames_after = frame_allocator().free_count();
    p->release();  // no thread ever ran: it goes with its last reference
    KCHECK(ok);
    log("[ktest]   frames free before %zu, after 3000 map/unmap %zu\n", frames_before,
        frames_after);
    KCHECK(frames_after == frames_before);
    return true;
}

constexpr Case kCases[] = {
    {"user_unmap_frees_page_tables", unmap_frees_page_tables},
    {"user_process_exit_ends_every_thread", process_exit_ends_every_thread},
    {"user_kill_from_outside", kill_from_outside},
    {"user_program_from_boot_module", program_from_boot_module},
    {"user_bad_programs_are_refused", bad_programs_are_refused},
    {"user_syscall_basics", syscall_basics},
    {"user_faults_kill_only_the_faulter", faults_kill_only_the_faulter},
    {"user_fpu_state_is_per_thread", fpu_state_is_per_thread},
};

}  // namespace

CaseList user_cases() {
    return {kCases, sizeof kCases / sizeof kCases[0]};
}

}  // namespace mk::ktest
