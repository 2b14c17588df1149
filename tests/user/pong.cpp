// An echo server for the user tests: answers each call on its first start
// handle with 3x+1 of word 0 and word 1 ^ 0x5555, word 2 the CPU the
// kernel says it runs on (StartInfo::cpu) and word 3 the APIC id of the
// processor it does run on (CPUID); label 3 carries a handle to send a message on; label 5 makes it
// spin in user mode for good (to be killed there); label 0xFFFF stops it.
#include "common.hpp"

using namespace mk;
using utest::Result;

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
        if (label == 5) {
            (void)ipc::reply(ipc::Message(0));
            for (;;) asm volatile("pause");
        }
        ipc::Message out(0);
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
