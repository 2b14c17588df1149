// An echo server for the user tests: answers each call on its first start
// handle with 3x+1 of word 0 and word 1 ^ 0x5555, word 2 the CPU the
// kernel says it runs on (StartInfo::cpu) and word 3 the APIC id of the
// processor it does run on (CPUID); label 3 carries a handle to send a message on; label 5 makes it
// spin in user mode for good (to be killed there), with word 1
// utest::kPongSpinKey (else it is an echo like any other); label 7 checks a TLB
// shootdown (tlb_check below); label 0xFFFF stops it.
#include "common.hpp"

using namespace mk;
using utest::Result;

namespace {

// Label 7: a second thread of this process, moved to CPU `cpu` (word 0),
// reads a page in a loop, so that CPU's TLB holds its translation; this
// thread, on its own CPU, unmaps the page and says so. The reader's next
// read must fault, which kills the process: the caller sees its call end
// with PeerDied and the death of a page fault. An answer means it did not:
// 0xBAD when the read after the unmap succeeded, 0xBAD1 when the reader
// could not get to another processor.
struct TlbCheck {
    volatile uint64_t* page = nullptr;
    uint32_t cpu = 0;
    uint32_t apic = 0;
    abi::Err moved = abi::Err::Ok;
    bool reading = false;
    bool unmapped = false;
    bool survived = false;
    uint64_t sum = 0;
};

void tlb_reader(void* arg) {
    auto* c = static_cast<TlbCheck*>(arg);
    c->moved = sys::set_affinity(abi::kNoHandle, uint64_t(1) << c->cpu);
    c->apic = utest::apic_id();
    uint64_t sum = 0;
    __atomic_store_n(&c->reading, true, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&c->unmapped, __ATOMIC_ACQUIRE)) sum += *c->page;
    sum += *c->page;  // unmapped by now, on every CPU
    c->sum = sum;
    __atomic_store_n(&c->survived, true, __ATOMIC_RELEASE);
}

uint64_t tlb_check(uint32_t cpu) {
    sys::Ret m = sys::invoke(abi::Sys::MemMap, 0, abi::kPageSize, abi::kProtRead | abi::kProtWrite);
    if (!m.ok()) return 0xBAD2;
    TlbCheck c;
    c.page = reinterpret_cast<volatile uint64_t*>(m.r0);
    *c.page = 1;
    c.cpu = cpu;
    if (!ipc::start_thread(tlb_reader, &c)) return 0xBAD2;
    while (!__atomic_load_n(&c.reading, __ATOMIC_ACQUIRE)) (void)sys::yield();
    if (c.moved != abi::Err::Ok || c.apic == utest::apic_id()) return 0xBAD1;
    if (!sys::invoke(abi::Sys::MemUnmap, 0, m.r0, abi::kPageSize).ok()) return 0xBAD2;
    __atomic_store_n(&c.unmapped, true, __ATOMIC_RELEASE);
    // The fault kills this thread too, on this CPU, while it waits here.
    for (int i = 0; i < 100000 && !__atomic_load_n(&c.survived, __ATOMIC_ACQUIRE); ++i)
        (void)sys::yield();
    return 0xBAD;
}

}  // namespace

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    ipc::Endpoint ep(start.handles[0]);
    Result<ipc::Received> r = ipc::recv(ep);
    while (r) {
        ipc::Received in = std::move(r).value();
        uint32_t label = in.message.label();
        if (label == 0xFFFF) {
            (void)ipc::reply(ipc::Message(0));
            return 0;
        }
        if (label == 5 && in.message.word(1) == utest::kPongSpinKey) {
            (void)ipc::reply(ipc::Message(0));
            for (;;) asm volatile("pause");
        }
        ipc::Message out(0);
        if (label == 7) {
            r = ipc::reply_recv(ep, out.set_word(0, tlb_check(uint32_t(in.message.word(0)))));
            continue;
        }
        if (label == 3) {
            // A handle came with it: answer, then say hello through it.
            ipc::Handle h = in.message.take_handle(0);
            out.set_word(0, h ? 1 : 0);
            (void)ipc::reply(out);
            if (h) {
                ipc::Endpoint target(std::move(h));
                (void)ipc::send(target, ipc::Message(4).set_word(0, in.message.word(0) + 1));
            }
            r = ipc::recv(ep);
            continue;
        }
        out.set_word(0, in.message.word(0) * 3 + 1)
            .set_word(1, in.message.word(1) ^ 0x5555)
            .set_word(2, start.cpu)
            .set_word(3, utest::apic_id());
        r = ipc::reply_recv(ep, out);
    }
    return 1;
}
