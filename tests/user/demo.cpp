// The boot demo (scripts/run): init starts an echo server and a few client
// processes from boot modules and shows them talking over endpoints, then
// idles. Every line it prints is prefixed "[init]" by the kernel's log.
#include "common.hpp"

using namespace mk;
using utest::rdtsc;
using utest::Result;
using utest::spawn;

int main(uint64_t arg) {
    const abi::StartInfo& start = utest::start_info(arg);
    abi::HandleValue modules = start.handles[0];
    printf("process %lu, running in ring 3\n", start.process_id);

    // An echo server in its own process, reached through an endpoint.
    Result<ipc::Endpoint> echo = ipc::Endpoint::create();
    if (!echo) return 1;
    abi::HandleValue h = echo.value().get();
    spawn(modules, "pong", 0, &h, 1);
    constexpr uint64_t kRounds = 10000;
    uint64_t sum = 0;
    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < kRounds; ++i) {
        Result<ipc::Received> r = ipc::call(echo.value(), ipc::Message(1).set_word(0, i));
        if (!r) return 2;
        sum += r.value().message.word(0);
    }
    uint64_t t1 = rdtsc();
    printf(
        "%lu calls to the echo server in another process, %lu TSC ticks per round "
        "trip (checksum %s)\n",
        kRounds, (t1 - t0) / kRounds,
        sum == 3 * kRounds * (kRounds - 1) / 2 + kRounds ? "ok" : "BAD");

    // Two clients with badged handles: the kernel tells the server who speaks.
    Result<ipc::Endpoint> inbox = ipc::Endpoint::create();
    if (!inbox) return 3;
    Result<ipc::Endpoint> deaths = ipc::Endpoint::create();
    if (!deaths) return 4;
    for (uint64_t badge : {uint64_t{0xA1}, uint64_t{0xB2}}) {
        Result<ipc::Endpoint> mine =
            inbox.value().mint(abi::kRightSend | abi::kRightDuplicate, badge);
        if (!mine) return 5;
        abi::HandleValue v = mine.value().release();
        spawn(modules, "client", (badge << 8) | 1, &v, 1, false, nullptr, deaths.value().get());
    }
    for (int i = 0; i < 2; ++i) {
        Result<ipc::Received> r = ipc::recv(inbox.value());
        if (!r) return 6;
        printf("a message from the client holding badge %#lx (it claims %#lx)\n", r.value().badge,
               r.value().message.word(0));
    }

    // A program that faults: it dies alone, and its supervisor is told.
    spawn(modules, "faulter", 0, nullptr, 0, true, nullptr, deaths.value().get());
    for (int i = 0; i < 3; ++i) {
        Result<ipc::Received> n = ipc::recv(deaths.value());
        if (!n) return 7;
        uint64_t status = n.value().message.word(1);
        if ((status & abi::kStatusKindMask) == abi::kStatusFault) {
            printf("process %lu died of exception %lu\n", n.value().message.word(0), status & 0xFF);
        } else {
            printf("process %lu exited with status %lu\n", n.value().message.word(0), status);
        }
    }
    (void)ipc::call(echo.value(), ipc::Message(0xFFFF));
    printf("demo done; the system idles now (QEMU: Ctrl-A X quits)\n");
    for (;;) (void)ipc::recv(inbox.value());
}
