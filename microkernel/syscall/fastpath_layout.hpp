/* What the syscall fast path's assembly (arch/x86_64/syscall.S) reads and
 * writes of the kernel's C++ objects: field offsets and the values of the
 * words it stores. Plain #defines, for the assembler; syscall/fastpath.cpp
 * checks every one against the C++ layout (static_assert, in the kernel's
 * build), so a change of layout fails the build instead of the kernel.
 * x86-64 only: Cpu::Context and the switch state are the architecture's. */
#pragma once

/* PerCpu, %gs-relative. */
#define PERCPU_KSTACK 8          /* entry.kernel_stack_top: where entries from ring 3 go */
#define PERCPU_SCHED_LOCK 80      /* scheduler.lock_ */
#define PERCPU_CURRENT 184        /* scheduler.current_ */
#define PERCPU_FAST_SWITCHES 360  /* scheduler.fast_switches_ */
#define PERCPU_SYSCALL_FASTPATH_MISSES 432 /* ipc.syscall_fastpath_misses */
#define PERCPU_LOADED_ROOT 40     /* arch.loaded_root */
#define PERCPU_LOADED_FS_KEY 48   /* arch.loaded_fs_key */
#define PERCPU_FPU_OWNER 56       /* arch.fpu_owner */
#define PERCPU_TS_SET 64          /* arch.ts_set */
#define PERCPU_PCID_ON 65         /* arch.pcid_on */
#define PERCPU_CR0_TS 72          /* arch.cr0_ts */

/* Thread. */
#define THREAD_QUEUE_HOOK 8      /* next, then prev; a queue's first is its header's next */
#define THREAD_WAITING_ON 24
#define THREAD_STATE_WORD 32     /* wake_reason .. spare_, one 8-byte word */
#define THREAD_AT_FRAME 34       /* at_frame, block_armed, wake_pending, exit_requested */
#define THREAD_EXIT_REQUESTED 37
#define THREAD_CPU 40
#define THREAD_TIMEOUT_HOOK 80   /* its first word (the parent) is 0 while unlinked */
#define THREAD_CONTEXT 120       /* context.rsp */
#define THREAD_KERNEL_STACK_TOP 128
#define THREAD_ROOT 136
#define THREAD_FS_KEY 152
#define THREAD_IPC_STATE 304     /* kThreadIpcStateOffset: the IpcState after the Thread */
#define THREAD_HANDLES 200      /* process->handles(), kept in the thread */
#define THREAD_ID 248

/* The thread state words: wake_reason None, Blocked, at_frame (block);
 * Woken, Running (wake). */
#define STATE_BLOCKED_AT_FRAME 0x10300
#define STATE_WOKEN_RUNNING 0x101

/* IpcState. */
#define IPC_OP 0                 /* op, result, user_op, spare_: one 4-byte word */
#define IPC_REPLY_CALLER 64
#define IPC_REPLY_CALL 72
#define IPC_CALL_SEQ 80
#define IPC_CALLERS 88           /* a WaitQueue: its header, next then prev */
#define IPC_ENDPOINT_REF 104

/* IpcState op words: ReplyWait, WouldBlock, Call (a caller waiting for its
 * reply); Recv, WouldBlock, Recv (a receiver waiting). 0: none. */
#define OP_REPLY_WAIT_CALL 0x10504
#define OP_RECV_WAIT 0x30503

/* KObject and Endpoint. */
#define KOBJECT_REFS 0
#define OBJECT_TYPE_ENDPOINT 1
#define ENDPOINT_SENDERS 8
#define ENDPOINT_RECEIVERS 24
#define ENDPOINT_DEAD_AND_NOTICES 44 /* dead_ (4 bytes), then the notices' size (4) */
#define ENDPOINT_LOCK 72         /* lock_: its word, 1 held, 0 free */

/* HandleTable. */
#define TABLE_LOCK 0
#define TABLE_SLOTS 8
#define TABLE_CAPACITY 16
#define SLOT_SHIFT 5             /* 32 bytes a slot */
#define SLOT_OBJECT 0
#define SLOT_BADGE 8
#define SLOT_KEY 16              /* Used: the handle naming the slot, 32 bits */
#define SLOT_RIGHTS 20
#define SLOT_STATE 21
#define SLOT_TYPE 22             /* the object's type while Used */
#define SLOT_USED 2
#define RIGHT_SEND 1
#define RIGHT_RECEIVE 2

/* The message info word a fast Call or ReplyRecv takes: a label below the
 * notice range, no payload, handles or reserved bits (the upper half 0). */
#define FAST_INFO_MAX 0xFFFFFEFF
/* MsgInfo's "reply expected" bit, which a receiver of a call sees. */
#define INFO_CALL_BIT 47
