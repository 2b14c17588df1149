// The smallest user program: prints through libipc's printf and exits.
#include "mk/runtime.hpp"

namespace {
double g_scale = 0.5;  // SSE in ring 3: the FPU state is the thread's own
}

int main(uint64_t arg) {
    double x = double(arg) * g_scale;
    mk::printf("hello from a user program (arg %lu, half of it %d)\n", arg, int(x));
    return 0;
}
