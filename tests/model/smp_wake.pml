/*
 * smp_wake.pml -- Promela model of how the kernel schedules and wakes threads on TWO
 * CPUs, as microkernel/scheduler.cpp does it today (docs/smp.md "Scheduling on several
 * CPUs", docs/locking.md "Several CPUs: one scheduler lock").  Checked exhaustively by
 * tests/model/run_spin.sh; README.md maps every name here to the C++.
 *
 * One lock for both CPUs: Scheduler::lock_ (static) guards both schedulers' ready
 * queues and current_, every thread's state, the wait queue and the zombie list.
 * `lk` names the CPU holding it.  A thread runs only on its home CPU (Thread::cpu).
 *
 * CPU1 (the home of W and B; each thread is a proctype, and `run1` says whose code,
 * on whose stack, CPU1 executes):
 *   W   Receiver: Endpoint::recv finds no sender and blocks on receivers_
 *       (block_current_locked: marked Blocked and linked under the lock, then
 *       schedule_locked -> switch_locked with the lock HANDED OVER to the thread
 *       switched to, which releases it); woken, it runs, then exit_current().
 *   B   Busy: a thread homed on CPU1, started from CPU0 (Scheduler::start); it runs
 *       (mk_thread_start -> finish_switch_in) and exits (exit_current).
 *   I1  Idle1: Scheduler::idle_loop / idle_once: interrupts off, lock, any ready ->
 *       schedule_locked; else unlock and `sti; hlt` as ONE step (an interrupt pending
 *       from before the sti ends the hlt at once).  The notify interrupt taken on its
 *       stack: on_notify (nothing), then preempt_if_needed: idle with work -> schedule.
 * CPU0 (its scheduling is not modelled; its two threads interleave freely):
 *   Waker   Scheduler::start(B) and Endpoint::send to W (complete_locked -> wake_locked
 *           -> end_wait_locked -> state Ready -> enqueue_locked: push on CPU1's ready_
 *           and Cpu::notify_cpu(1) if CPU1's current_ is its idle thread), in either
 *           order, each its own critical section.
 *   Reaper  reaper_entry: next_zombie (lock, pop the zombie list) + Thread::destroy
 *           (frees the stack, outside the lock).
 * The notify IPI (`pend1`) stays pending at CPU1 until CPU1 has interrupts on; it is
 * one pending bit (two notifies merge).  The timer is left out: a CPU's own tick would
 * end a halt (and preempt_if_needed would then run the thread), so a wake-up lost here
 * is, on the hardware, one that waits for the next tick -- or for ever on a CPU whose
 * timer is stopped.
 *
 * Properties:
 *   1. no lost wake-up: when nothing can move any more (`timeout`), CPU1 halts with
 *      nothing ready and no interrupt pending, W was woken and ran, W and B were
 *      reaped (Check);
 *   2. a thread's stack is used by one CPU at a time and only by its home CPU
 *      (switch_context: stk[], home[]) -- W never runs on two CPUs, nor on CPU0;
 *   3. the lock: every access to what it guards is made by the CPU holding it; a thread
 *      switched to finds it held by its CPU (the hand-over) and releases it; the waker
 *      never finds W Blocked while CPU1 is still on W's stack (scheduler.hpp: "a wake
 *      can never land between marked Blocked and switched away"); the reaper never
 *      frees a stack a CPU is on, nor one freed already;
 *   4. no deadlock: spin's invalid-end-state check; in a -DNP run, every run ends (no
 *      cycle at all), so the `timeout` check of property 1 covers every run.
 *
 * Variants that must PASS (they show which mechanism covers which window):
 *   BUG_HLT_WINDOW     `sti` and `hlt` apart: a notify taken between them runs
 *                      preempt_if_needed, which schedules the woken thread itself
 *   NOTIFY_NO_PREEMPT  the notify's end does not schedule (it only ends the hlt):
 *                      the next idle_once pass finds the thread
 * Negative controls (must FAIL):
 *   BUG_NO_NOTIFY              enqueue_locked() queues on the other CPU without notify_cpu
 *   BUG_HLT_WINDOW + NOTIFY_NO_PREEMPT
 *                              both at once: the notify lands between sti and hlt, does
 *                              nothing, and the hlt sleeps through the wake
 *   BUG_RELEASE_BEFORE_SWITCH  switch_locked() releases the lock while still on prev's
 *                              stack (no hand-over): the waker finds W Blocked while
 *                              CPU1 is on W's stack, or the reaper frees the stack of a
 *                              thread CPU1 is still leaving.  (W itself cannot run
 *                              early: only CPU1 runs it, and CPU1 is busy leaving it.
 *                              The harm is to whoever, on the other CPU, takes a
 *                              Blocked or Dead thread to be off its CPU.)
 *   BUG_REAPER_NO_LOCK         the reaper pops the zombie list without the lock (say,
 *                              a lock-free pop) and frees the stack at once
 * Not modelled: the timer, preemption, donation and the hand-off queue (none crosses
 * CPUs), CPU0's scheduling and halt, a send that finds no receiver (the waker waits
 * for W on receivers_), kill from another CPU, timeouts (README.md).
 * PROBE_ALL: reachability probes (REACH(n) fails with its own text; run_spin.sh
 * checks that each is reached).
 */
/* thread numbers in the printf story: W = 0, B = 1, I1 = 2 */
#define W    0                  /* homed on CPU1: blocks in Endpoint::recv */
#define B    1                  /* homed on CPU1: started from CPU0, exits */
#define I1   2                  /* CPU1's idle thread */
#define NT   3
#ifndef NROUNDS
#define NROUNDS 2               /* W's receives (each blocks and is woken) */
#endif
#define NOCPU 0
#define CPU0 1
#define CPU1 2

mtype = { CREATED, RUNNING, READY, BLOCKED, DEAD };   /* ThreadState */

#if defined(PROBE_ALL)
#define REACH(n) assert(n == 100)     /* each probe fails with its own text */
#else
#define REACH(n) skip
#endif

byte  lk;                       /* Scheduler::lock_: NOCPU (free), CPU0 or CPU1 */
byte  cur1;                     /* CPU1's Scheduler::current_ */
byte  run1;                     /* ghost: the thread whose code and stack CPU1 is on */
mtype state[NT];                /* Thread::state */
byte  home[NT];                 /* Thread::cpu */
byte  rq[2];                    /* CPU1's Scheduler::ready_ (FIFO) */
byte  rq_len;
bit   wq_w;                     /* W linked on the endpoint's receivers_ */
byte  zq[2];                    /* Scheduler::zombies_ (FIFO) */
byte  zq_len;
bit   if1;                      /* CPU1's RFLAGS.IF */
bit   pend1;                    /* the notify vector pending at CPU1's local APIC */
bit   halted1;                  /* CPU1 in hlt */
byte  stk[NT];                  /* ghost: the CPU on each thread's stack (NOCPU: none) */
bit   freed[NT];                /* ghost: Thread::destroy freed the stack */
byte  woken_w, ran_w;          /* ghosts: W's wakes and the runs after them */

inline rq_push(t) { rq[rq_len] = t; rq_len++ }
inline rq_pop(t)  { t = rq[0]; rq[0] = rq[1]; rq[1] = 0; rq_len-- }

/* Scheduler::enqueue_locked(t), called on CPU0 for a thread homed on CPU1 */
inline enqueue_locked(t) {
  assert(lk == CPU0 && home[t] == CPU1);
  rq_push(t);
#ifndef BUG_NO_NOTIFY
  if
  :: cur1 == I1 -> pend1 = 1; REACH(1);         /* Cpu::notify_cpu(1) */
     printf("CPU0: queued %d on CPU1, which idles: notify_cpu(1)\n", t)
  :: else -> REACH(2);                          /* CPU1 busy: not interrupted */
     printf("CPU0: queued %d on CPU1, which runs %d: no notify\n", t, cur1)
  fi
#else
  printf("CPU0: queued %d on CPU1 (BUG_NO_NOTIFY: no notify)\n", t)
#endif
}

/* Scheduler::schedule_locked(...) + the bookkeeping half of switch_locked(), on CPU1.
   No donation crosses CPUs (set_donate_target_locked ignores a thread of CPU0) and
   CPU1 has no donor: the round robin picks. */
inline schedule_locked1(prev, nxt) {
  assert(lk == CPU1 && cur1 == prev && run1 == prev);
  assert(state[prev] != RUNNING || prev == I1);   /* no preemption of W, B here */
  if :: state[prev] == RUNNING -> state[prev] = READY :: else fi;  /* idle: never queued */
  if :: rq_len > 0 -> rq_pop(nxt) :: else -> nxt = I1 fi;
  state[nxt] = RUNNING; cur1 = nxt;               /* switch_locked: current_ = &next */
  printf("CPU1: switch from %d to %d\n", prev, nxt)
}

/* Cpu::switch_context (switch_context_leaving_stack alike): CPU1 saves prev's
   registers on prev's stack and goes on on next's.  The lock stays held by CPU1:
   the thread switched to releases it. */
inline switch_context(prev) {
#ifdef BUG_RELEASE_BEFORE_SWITCH
  atomic { assert(lk == CPU1); lk = NOCPU;        /* released while still on prev's stack */
           printf("CPU1: lock released while still on %d's stack\n", prev) }
#endif
  atomic {
    assert(run1 == prev && stk[prev] == CPU1 && !freed[prev]);
    stk[prev] = NOCPU;
    assert(home[cur1] == CPU1 && stk[cur1] == NOCPU && !freed[cur1]);
    stk[cur1] = CPU1; run1 = cur1
  }
}

/* the thread switched to: the lock handed over is CPU1's; release it (LockGuard of the
   code it returns into, or finish_switch_in) */
inline release_handed_over() {
#ifndef BUG_RELEASE_BEFORE_SWITCH
  assert(lk == CPU1); lk = NOCPU
#else
  skip
#endif
}

/* a notify taken while W or B runs: on_notify; preempt_if_needed: current_ is not the
   idle thread, nothing to do */
inline irq_window_thread() {
  if
  :: pend1 -> atomic { lk == NOCPU -> pend1 = 0; REACH(3) }
  :: else
  fi
}

/* Scheduler::exit_current() of t on CPU1: Dead, bury_locked (zombie list; wake the
   reaper, homed on CPU0), schedule_locked(true), switch away for good */
inline exit_current(t, nxt) {
  atomic { run1 == t && lk == NOCPU -> lk = CPU1; if1 = 0;
           state[t] = DEAD; zq[zq_len] = t; zq_len++; printf("CPU1: %d exits\n", t);
           schedule_locked1(t, nxt) }
  switch_context(t)
}

proctype Receiver() {           /* W: NROUNDS x Endpoint::recv -> block_current_locked */
  byte nxt;
  do
  :: ran_w < NROUNDS ->
     /* LockGuard (interrupts off); no sender: mark_current_blocked_locked(&receivers_) */
     atomic { run1 == W && lk == NOCPU -> lk = CPU1; if1 = 0;
              assert(state[W] == RUNNING && cur1 == W);
              state[W] = BLOCKED; wq_w = 1; printf("CPU1: W blocks on receivers_\n");
              schedule_locked1(W, nxt) }
     switch_context(W);
     /* switched to again: back in block_current_locked -> Endpoint::recv's LockGuard */
     atomic { run1 == W -> assert(state[W] == RUNNING && cur1 == W && woken_w == ran_w + 1);
              release_handed_over(); if1 = 1; ran_w++; printf("CPU1: W runs again\n") }
     irq_window_thread()
  :: else -> break
  od;
  exit_current(W, nxt)
}

proctype Busy() {               /* B: mk_thread_start -> finish_switch_in; exit_current */
  byte nxt;
  atomic { run1 == B -> assert(state[B] == RUNNING && cur1 == B);
           release_handed_over(); if1 = 1 }     /* lock_.unlock(true) */
  irq_window_thread();
  exit_current(B, nxt)
}

proctype Idle1() {              /* Scheduler::idle_loop -> idle_once; the notify interrupt */
  byte nxt;
  bit ret_hlt;                  /* on its stack: the interrupt came between sti and hlt */
resume:                         /* switched to (in idle_once or in preempt_if_needed) */
  atomic { run1 == I1 -> assert(cur1 == I1 && state[I1] == RUNNING);
           release_handed_over() }
#ifdef BUG_HLT_WINDOW
  if :: ret_hlt -> ret_hlt = 0; if1 = 1; goto hlt_only :: else fi;  /* iret: to the hlt */
#endif
  if1 = 1;                      /* iret / restore_interrupts(true) */
top:
  if
  :: pend1 -> pend1 = 0; if1 = 0;              /* interrupts on: taken at once */
     printf("CPU1: idle takes the notify between passes\n"); goto irq
  :: else
  fi;
  /* idle_once: save_and_disable_interrupts(); LockGuard; any_ready_locked() */
  atomic { lk == NOCPU -> if1 = 0; lk = CPU1 }
  if
  :: rq_len > 0 ->
     atomic { REACH(4); schedule_locked1(I1, nxt) }
     switch_context(I1);
     goto resume
  :: else ->
     lk = NOCPU;                /* ~LockGuard: interrupts stay off */
     printf("CPU1: idle_once finds nothing ready\n");
#ifdef BUG_HLT_WINDOW
     if1 = 1;                   /* sti, apart from the hlt */
     if
     :: pend1 -> pend1 = 0; if1 = 0; ret_hlt = 1; REACH(5);
        printf("CPU1: the notify is taken between sti and hlt\n"); goto irq
     :: else
     fi;
hlt_only:
     halted1 = 1; printf("CPU1: hlt\n");  /* hlt */
#else
     atomic { if1 = 1; halted1 = 1; printf("CPU1: sti; hlt\n") }  /* enable_and_wait_for_interrupt */
#endif
end_hlt:
     atomic { pend1 -> pend1 = 0; halted1 = 0; if1 = 0; REACH(6);
              printf("CPU1: the notify ends the hlt\n") }
  fi;
irq:                            /* on_notify(), irq_exit, EOI, preempt_if_needed() */
#ifndef NOTIFY_NO_PREEMPT
  atomic { lk == NOCPU -> lk = CPU1 }
  if
  :: rq_len > 0 ->              /* current_ is the idle thread and work is ready */
     atomic { REACH(7); schedule_locked1(I1, nxt) }
     switch_context(I1);
     goto resume
  :: else -> lk = NOCPU
  fi;
#endif
#ifdef BUG_HLT_WINDOW
  if :: ret_hlt -> ret_hlt = 0; if1 = 1; goto hlt_only :: else fi;  /* iret: to the hlt */
#endif
  if1 = 1;                      /* iret; restore_interrupts(true) */
  goto top
}

proctype Waker() {              /* a thread on CPU0 */
  bit started; byte sent;
  do
  :: !started ->                /* Scheduler::start(B), B homed on CPU1 */
     atomic { lk == NOCPU -> lk = CPU0;
              assert(state[B] == CREATED); state[B] = READY; enqueue_locked(B);
              lk = NOCPU; started = 1 }
  :: sent < NROUNDS ->          /* Endpoint::send: W waits on receivers_ */
     atomic { lk == NOCPU && wq_w -> lk = CPU0;
              assert(state[W] == BLOCKED);
              assert(stk[W] == NOCPU);  /* the hand-over: CPU1 is off W's stack */
              wq_w = 0;                 /* end_wait_locked */
              state[W] = READY; woken_w++;
              if :: cur1 == B -> REACH(8) :: else fi;
              enqueue_locked(W);
              lk = NOCPU; sent++ }
  :: started && sent == NROUNDS -> break
  od
}

proctype Reaper() {             /* reaper_entry: Thread::destroy(next_zombie()) */
  byte z;
end_reaper:
  do
  :: zq_len > 0 ->
#ifdef BUG_REAPER_NO_LOCK
     atomic { zq_len > 0 -> z = zq[0]; zq[0] = zq[1]; zq[1] = 0; zq_len-- }
#else
     atomic { lk == NOCPU && zq_len > 0 ->      /* next_zombie: LockGuard; pop */
              lk = CPU0; z = zq[0]; zq[0] = zq[1]; zq[1] = 0; zq_len--; lk = NOCPU }
#endif
     atomic { assert(stk[z] == NOCPU && !freed[z] && state[z] == DEAD);  /* Thread::destroy */
              freed[z] = 1; if :: z == W -> REACH(9) :: else fi;
              printf("CPU0: the reaper frees %d\n", z); z = 0 }
  od
}

active proctype Check() {       /* ghost: when nothing can move any more */
end_check:
  timeout ->
  assert(!(rq_len > 0 && halted1 && !pend1));     /* 1: a Ready thread slept through */
  assert(halted1 && rq_len == 0 && !pend1 && lk == NOCPU);
  assert(woken_w == NROUNDS && ran_w == NROUNDS && freed[W] && freed[B]);
  assert(run1 == I1 && stk[I1] == CPU1 && stk[W] == NOCPU && stk[B] == NOCPU);
  REACH(10)
}

init {
  atomic {
    home[W] = CPU1; home[B] = CPU1; home[I1] = CPU1;
    state[W] = RUNNING; state[B] = CREATED; state[I1] = READY;
    cur1 = W; run1 = W; stk[W] = CPU1; if1 = 1;
    run Receiver(); run Busy(); run Idle1(); run Waker(); run Reaper()
  }
}
