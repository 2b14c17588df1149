// The smallest user program: prints through libipc's printf and exits.
#include "mk/abi.hpp"
#include "mk/runtime.hpp"

namespace {
double g_scale = 0.5;  // SSE in ring 3: the FPU state is the thread's own
}

int main(uint64_t arg) {
    // Spawned programs get a StartInfo pointer; the kernel's own tests pass a number.
    if (arg >= mk::abi::kUserBase) {
        const auto& start = *reinterpret_cast<const mk::abi::StartInfo*>(arg);
        mk::printf("hello from a user program (process %lu, %u start handles)\n", start.process_id,
                   start.handle_count);
        return 0;
    }
    double x = double(arg) * g_scale;
    mk::printf("hello from a user program (arg %lu, half of it %d)\n", arg, int(x));
    return 0;
}
