#include "program.hpp"

#include "percpu.hpp"

#include <utility>

#include "elf.hpp"
#include "mk/abi.hpp"
#include "panic.hpp"
#include "process.hpp"
#include "thread.hpp"

namespace mk {

Result<Program> load_program(const char* name, const void* image, size_t size, uint64_t arg,
                             const char** reason, uint32_t cpu, uint32_t mask) {
    Result<ElfImage> parsed = parse_elf(image, size, reason);
    if (!parsed) return parsed.error();
    const ElfImage& elf = parsed.value();
    if (elf.page_count + abi::kMainStackPages > Process::kMaxPages) {
        if (reason != nullptr) *reason = "program: larger than a process may be";
        return Error::LimitReached;
    }
    Result<Process*> created = Process::create(name, cpu, mask);
    if (!created) return created.error();
    Process* p = created.value();
    const auto* bytes = static_cast<const unsigned char*>(image);
    Status st = Error::None;
    for (size_t i = 0; i < elf.segment_count && st == Error::None; ++i) {
        const ElfSegment& seg = elf.segments[i];
        SegmentPlan plan = plan_segment(seg);
        // map_anonymous zero-fills, so only the file's bytes are copied.
        st = p->map_anonymous(plan.page_start, plan.page_count, uint32_t(plan.prot));
        if (st == Error::None) {
            st = p->load(seg.vaddr, bytes + seg.file_offset, seg.file_size);
        }
    }
    constexpr uint64_t kStackBytes = abi::kMainStackPages * abi::kPageSize;
    if (st == Error::None) {
        st = p->map_anonymous(abi::kUserEnd - kStackBytes, abi::kMainStackPages,
                              abi::kProtRead | abi::kProtWrite);
    }
    Thread* thread = nullptr;
    if (st == Error::None) {
        Result<Thread*> t = p->create_thread("main", elf.entry, abi::kUserEnd, arg);
        st = t.error();
        if (t) thread = t.value();
    }
    if (st != Error::None) {
        if (reason != nullptr) *reason = "program: cannot map or fill its memory";
        p->release();
        return st;
    }
    return Program{p, thread};
}

Result<Program> spawn_program(const char* name, const void* image, size_t size, uint64_t arg,
                              const char* args, size_t args_length, HandleEntry* handles,
                              uint32_t count, const char** reason, uint32_t cpu, uint32_t mask) {
    if (count > abi::kMaxStartHandles) return Error::InvalidArgument;
    Result<Program> prog = load_program(name, image, size, 0, reason, cpu, mask);
    if (!prog) return prog;
    Process* child = prog.value().process;
    abi::StartInfo start{};
    start.arg = arg;
    if (args_length > sizeof start.args - 1) args_length = sizeof start.args - 1;
    __builtin_memcpy(start.args, args, args_length);  // NUL after it: start is zeroed
    start.process_id = child->id();
    start.handle_count = count;
    start.cpu = child->cpu();
    start.cpu_count = cpu_count();
    start.affinity = child->affinity();
    for (uint32_t i = 0; i < count; ++i) {
        // A fresh table of kProcessHandleLimit slots holds kMaxStartHandles.
        Result<HandleValue> v = child->handles().insert(std::move(handles[i]));
        MK_ASSERT(v.ok());
        start.handles[i] = v.value();
    }
    uint64_t info_at = (abi::kUserEnd - sizeof start) & ~uint64_t{15};
    MK_ASSERT(child->copy_to_user(info_at, &start, sizeof start) == Error::None);
    Thread* thread = prog.value().thread;
    thread->user_rsp = info_at;
    thread->user_arg = info_at;
    return prog;
}

}  // namespace mk
