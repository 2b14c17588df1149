// A tiny static x86-64 program, linked by the host toolchain the way user
// programs are (no libc, no PIE, W^X, no executable stack). It is never run:
// the unit tests parse it, to check the ELF parser against what a real linker
// writes. Text, read-only data, data and bss each land in a segment of their own.
extern "C" {

extern const char sample_message[];
const char sample_message[] = "elf sample: rodata";  // .rodata
volatile int sample_counter = 0x5a5a5a5a;            // .data
char sample_buffer[8192];                            // .bss

[[noreturn]] void _start() {
    sample_counter =
        sample_counter + sample_message[sample_counter & 7] + sample_buffer[sample_counter & 8191];
    for (;;) asm volatile("syscall" : : "a"(10) : "rcx", "r11", "memory");  // ThreadExit
}

}  // extern "C"
