/*
 * smp_wake.pml -- Promela model of how the kernel schedules and wakes threads on TWO
 * CPUs, as microkernel/scheduler.cpp does it today (docs/smp.md "Scheduling on several
 * CPUs", docs/locking.md).  Checked exhaustively by tests/model/run_spin.sh; README.md
 * maps every name here to the C++.
 *
 * The locks (`elk`, `slk[]` name the CPU holding each; NOCPU: free):
 *   S0, S1  Scheduler::lock_ of CPU0 and of CPU1 (slk[S0], slk[S1]): S[c] guards CPU c's
 *           ready queue and current_ and the scheduling state of the threads homed on c.
 *   E       an endpoint's lock (elk; in the code Endpoint::lock_, was the one IPC lock
 *           g_ipc_lock): its wait queues and its waiters' IPC state.
 *   Z       Scheduler::zombies_lock_ (zlk): the zombie list; a leaf, taken after any
 *           other and with nothing taken under it.
 * IpcGuard takes E, then the CPU's own S.  A thread homed on the other CPU is reached
 * with Scheduler::HomeLock: that CPU's S as a SECOND scheduler lock, taken only with E
 * held, and the two in CPU index order: for the lower CPU (CPU1 waking the reaper on
 * CPU0) HomeLock lets go of its own S, takes the other, then its own again -- with E
 * held nobody else can take it in between.  So two CPUs never each hold one S and
 * wait for the other's, by either rule alone (SECOND_S_WITHOUT_E).  A switch
 * (enter_switch_locked) lets go of E first; the CPU's own S is held across the switch
 * and HANDED OVER to the thread switched to, which releases it.  A thread runs only on
 * its home CPU (Thread::cpu).  A CPU holding a lock has interrupts off: no other thread
 * of that CPU runs until it has let go of all of them (FREE0 for CPU0).
 *
 * CPU1 (the home of W and B; each thread is a proctype, and `run1` says whose code,
 * on whose stack, CPU1 executes):
 *   Receiver  W: Endpoint::recv finds no sender and blocks on receivers_
 *             (block_current_locked under E + S1: mark_current_blocked_locked links it
 *             and marks it Blocked, then schedule_locked -> enter_switch_locked lets go
 *             of E -> switch_locked with S1 handed over); woken, it runs, then
 *             Scheduler::exit_current().
 *   Busy      B: a thread homed on CPU1, started from CPU0 (Scheduler::start); it runs
 *             (mk_thread_start -> Scheduler::finish_switch_in) with interrupts on, so
 *             a pending notify is taken before its next step: on_notify, then
 *             preempt_if_needed (S1) -> preempt_locked, which switches for a Ready
 *             donate target homed here or need_resched_, honouring the target (W runs; B waits at
 *             the front of the hand-off queue and runs again when W blocks or exits);
 *             then it exits (exit_current).
 *   exit_current (both): Scheduler::exit_current under E + S1: Dead; bury_locked takes
 *             the reaper's home lock (HomeLock of CPU0, the lower: S1 let go, S0, S1
 *             again), then under it pushes the thread on the zombie list (under Z, let
 *             go at once) and wakes the reaper (wake_at_home_locked), and lets S0 go;
 *             schedule_locked lets go of E and switches away for good with S1 handed
 *             over.
 *   Idle1     Scheduler::idle_loop / idle_once: interrupts off, S1, any ready ->
 *             schedule_locked; else release S1 and `sti; hlt` as ONE step (an interrupt
 *             pending from before the sti ends the hlt at once).  The notify interrupt
 *             taken on its stack (label irq): Scheduler::on_notify (nothing), then
 *             Scheduler::preempt_if_needed: S1; idle with work -> schedule_locked.
 * CPU0 (its scheduling is not modelled; its two threads interleave wherever neither
 * holds a lock):
 *   Waker     Scheduler::start(B) and Endpoint::send to W, in either order, each under
 *             IpcGuard (E + S0) and HomeLock (S1): send: end_wait_locked (off
 *             receivers_), Ready; start: Ready; both: enqueue_locked pushes on CPU1's
 *             ready_ and calls Cpu::notify_cpu(1) if CPU1's current_ is its idle
 *             thread; the send then donates (Scheduler::donate_locked ->
 *             donate_elsewhere_locked, "wake there, now"): a busy CPU1 gets W as its
 *             donate target (it has none of its own here) and the notify -- all
 *             under S1; then S1, S0 and E are released.
 *   Reaper    reaper_entry: Scheduler::next_zombie under its own S0 (LockGuard): pop
 *             the zombie list under Z; no zombie: block_current_locked (Blocked under
 *             S0, which the switch hands over; woken by bury_locked's wake, which takes
 *             S0 after its push, CPU0 runs it again); a zombie: S0 let go, then
 *             Thread::destroy under IpcGuard (E + S0): HomeLock of the zombie's home
 *             CPU (S1) taken and let go at once (Scheduler::wait_off_cpu_locked) --
 *             CPU1 held S1 from the push until it ran on the next thread's stack, so
 *             once the reaper has had S1, CPU1 is off the zombie's stack -- then the
 *             locks are released and Thread::destroy frees the stack outside any lock.
 *   Check     ghost: the end-of-run check (no kernel function).
 * The notify IPI (`pend1`) stays pending at CPU1 until CPU1 has interrupts on; it is
 * one pending bit (two notifies merge).  The timer is left out: a CPU's own tick would
 * end a halt (and preempt_if_needed would then run the thread), so a wake-up lost here
 * is, on the hardware, one that waits for the next tick -- or for ever on a CPU whose
 * timer is stopped.
 *
 * Properties:
 *   1. no lost wake-up: when nothing can move any more (`timeout`), CPU1 halts with
 *      nothing ready and no interrupt pending, W was woken and ran, W and B were
 *      reaped and the reaper is Blocked on an empty zombie list (Check);
 *   2. a thread's stack is used by one CPU at a time and only by its home CPU
 *      (switch_context: stk[], home[]) -- W never runs on two CPUs, nor on CPU0;
 *   2b. "wake there, now": a donation to W while B runs makes CPU1 switch from B to
 *      W before B's next step, and one to an idle CPU1 with B queued ahead of W runs
 *      W first (ghost `owed`, asserted when B exits); a target is
 *      honoured only Ready and homed on CPU1, and every switch through
 *      schedule_locked consumes it (a direct switch would leave it: none here);
 *   3. the locks: every access to what one guards is made by the CPU holding it; a
 *      thread switched to finds S1 held by its CPU, and no E (the hand-over), and
 *      releases it; the waker never finds W Blocked while CPU1 is still on W's stack
 *      (scheduler.hpp: "a wake can never land between marked Blocked and switched
 *      away"); the reaper never frees a stack a CPU is on, nor one freed already;
 *      the lock order (lockE, lockS): no E acquired with an S held; a CPU's first S
 *      is its own (or another, with E held); a second S only with E held, in CPU
 *      index order (S0 before S1), and never a third;
 *   4. no deadlock: no lock is held when nothing can move (Check) and spin's
 *      invalid-end-state check; in a -DNP run, every run ends (no cycle at all), so
 *      the `timeout` check of property 1 covers every run.
 *
 * Variants that must PASS (they show which mechanism covers which window):
 *   REAPER_WITHOUT_E   Thread::destroy takes S0 and the zombie's S1 without E: the push
 *                      under the reaper's lock, after the gap, keeps the reaper off a
 *                      stack CPU1 is still on
 *   SECOND_S_WITHOUT_E Scheduler::start(B) takes S0 and then S1 without E: the index
 *                      order alone keeps the two CPUs from waiting for each other (the
 *                      code still takes E: a thread's home stays put under it, and no
 *                      other CPU can take the lock this one lets go of in HomeLock)
 *   BUG_HLT_WINDOW     `sti` and `hlt` apart: a notify taken between them runs
 *                      preempt_if_needed, which schedules the woken thread itself
 *   NOTIFY_NO_PREEMPT  the notify's end does not schedule (it only ends the hlt):
 *                      the next idle_once pass finds the thread
 * Negative controls (must FAIL):
 *   BUG_NO_NOTIFY              enqueue_locked() queues on the other CPU without notify_cpu
 *   BUG_HLT_WINDOW + NOTIFY_NO_PREEMPT
 *                              both at once: the notify lands between sti and hlt, does
 *                              nothing, and the hlt sleeps through the wake
 *   BUG_RELEASE_BEFORE_SWITCH  switch_locked() releases S1 while still on prev's stack
 *                              (no hand-over): the waker, E, S0 and S1 held, finds W
 *                              Blocked while CPU1 is on W's stack, or the reaper frees
 *                              the stack of a thread CPU1 is still leaving.  (W itself
 *                              cannot run early: only CPU1 runs it, and CPU1 is busy
 *                              leaving it.  The harm is to whoever, on the other CPU,
 *                              takes a Blocked or Dead thread to be off its CPU.)
 *   BUG_REAPER_NO_HOME_LOCK    Thread::destroy (under E + S0) does not take the zombie's
 *                              home lock (S1) before the free: exit_current has let go of E before
 *                              its switch, and the reaper frees the stack CPU1 is on
 *   BUG_REAPER_NO_LOCK         the reaper pops the zombie list with no lock at all (say,
 *                              a lock-free pop) and frees the stack at once
 *   BUG_WAKE_BEFORE_PUSH       bury_locked wakes the reaper, lets its lock go, and only
 *                              then pushes the zombie: the reaper, still running,
 *                              finds the list empty and blocks, and the zombie is
 *                              never reaped (Check)
 *   BUG_DONATE_NO_NOTIFY       the donation sets CPU1's target but sends no notify: B
 *                              runs on and exits first (owed)
 *   BUG_PREEMPT_NEEDS_RESCHED  preempt_locked switches only for need_resched_ (which a
 *                              donation leaves alone): B's interrupt ends without a
 *                              switch (owed)
 *   BUG_IDLE_IGNORES_TARGET    idle_once's switch does not honour the target (it did
 *                              until a donation could target an idle CPU): W, donated
 *                              to an idle CPU1 behind B, is consumed as a target and
 *                              B runs first (owed)
 *   BUG_PUSH_BEFORE_GAP + REAPER_WITHOUT_E
 *                              bury_locked pushes the zombie before HomeLock's gap, and
 *                              Thread::destroy takes S0 and the zombie's S1 without E
 *                              (as once the IPC lock is gone): the reaper pops the
 *                              zombie and takes S1 in the gap, while CPU1 is still on
 *                              its stack, and frees it (stk[z]).  BUG_PUSH_BEFORE_GAP
 *                              alone passes: E keeps the reaper out of the gap
 *   BUG_S_AGAINST_ORDER + SECOND_S_WITHOUT_E
 *                              exit_current's wake of the reaper takes S0 while it
 *                              holds S1 (against the index order), and start(B) takes
 *                              S0 and then S1 without E: the two CPUs deadlock (Check:
 *                              locks held when nothing can move)
 * Not modelled: the timer and the quantum (the hand-off queue never goes to the back
 * of the ready queue here), donation on one CPU, CPU1 having a donate target of its
 * own, moves between CPUs (a move's gap, where another CPU may set the target, is the
 * host tests' part: ADonationInAMovesGapIsVoidOnceTheThreadMoved), CPU0's scheduling and halt, a send that finds no receiver
 * (the waker waits for W on receivers_), kill from another CPU, timeouts (README.md).
 * PROBE_ALL: reachability probes (REACH(n) fails with its own text; run_spin.sh
 * checks that each is reached); 11-13 are of the per-CPU locks: the reaper pops a
 * zombie CPU1 is still on (and waits for S1), the exit's wake finds the reaper
 * Blocked, the waker has E + S0 while CPU1 is still on W's stack (and waits for S1);
 * 14-16 of the donation: CPU1 takes the donate target, CPU0 makes W CPU1's target
 * (busy), CPU0 makes W the target of an idle CPU1 with B queued ahead.
 */
/* thread numbers in the printf story: W = 0, B = 1, I1 = 2 */
#define W    0                  /* homed on CPU1: blocks in Endpoint::recv */
#define B    1                  /* homed on CPU1: started from CPU0, exits */
#define I1   2                  /* CPU1's idle thread */
#define NT   3
#define NONE 255                /* no donate target */
#ifndef NROUNDS
#define NROUNDS 2               /* W's receives (each blocks and is woken) */
#endif
#define NOCPU 0
#define CPU0 1
#define CPU1 2
#define S0 0                    /* slk[] index: CPU0's scheduler lock */
#define S1 1                    /* slk[] index: CPU1's scheduler lock */

mtype = { CREATED, RUNNING, READY, BLOCKED, DEAD };   /* ThreadState */

#if defined(PROBE_ALL)
#define REACH(n) assert(n == 100)     /* each probe fails with its own text */
#else
#define REACH(n) skip
#endif

byte  elk;                      /* g_ipc_lock (E): NOCPU (free), CPU0 or CPU1 */
byte  slk[2];                   /* Scheduler::lock_ of CPU0 (S0) and CPU1 (S1): holder */
byte  cur1;                     /* CPU1's Scheduler::current_ */
byte  run1;                     /* ghost: the thread whose code and stack CPU1 is on */
mtype state[NT];                /* Thread::state of W, B, I1 (guarded by S1) */
byte  home[NT];                 /* Thread::cpu */
mtype rst;                      /* the reaper's Thread::state (homed on CPU0: S0) */
byte  rq[2];                    /* CPU1's Scheduler::ready_ (FIFO) */
byte  rq_len;
bit   wq_w;                     /* W linked on the endpoint's receivers_ (E) */
byte  zlk;                      /* Scheduler::zombies_lock_ (Z): holder */
byte  zq[2];                    /* Scheduler::zombies_ (FIFO; Z) */
byte  zq_len;
bit   if1;                      /* CPU1's RFLAGS.IF */
byte  dt1 = NONE;               /* CPU1's Scheduler::donate_target_ (S1) */
bit   nr1;                      /* CPU1's Scheduler::need_resched_ (S1) */
bit   hq_b;                     /* B lent at the front of CPU1's hand-off queue (S1) */
bit   owed;                     /* ghost: a donation made W CPU1's target while B ran
                                   or waited ahead of it: B must not run on first */
bit   pend1;                    /* the notify vector pending at CPU1's local APIC */
bit   halted1;                  /* CPU1 in hlt */
byte  stk[NT];                  /* ghost: the CPU on each thread's stack (NOCPU: none) */
bit   freed[NT];                /* ghost: Thread::destroy freed the stack */
byte  woken_w, ran_w;          /* ghosts: W's wakes and the runs after them */

/* CPU1's Scheduler::any_ready_locked() */
#define ANY_READY1 (rq_len > 0 || hq_b)
/* the scheduler locks CPU c holds (0, 1 or 2) */
#define NS(c) ((slk[S0] == c) + (slk[S1] == c))
/* CPU0 holds no lock: a thread of CPU0 holding one runs with interrupts off, so the
   other thread of CPU0 cannot run until it has let go of all of them */
#define FREE0 (elk != CPU0 && slk[S0] != CPU0 && slk[S1] != CPU0 && zlk != CPU0)
/* the scheduler lock that guards thread t: its home CPU's */
#define HS(t) (home[t] - 1)

/* LockGuard / IpcGuard on E: never with a scheduler lock held (the order is E, then
   the CPU's own S, then at most one other CPU's S) */
inline lockE(c) {
  assert(elk == NOCPU && NS(c) == 0 && zlk != c); elk = c
}
inline unlockE(c) { assert(elk == c); elk = NOCPU }
/* a scheduler lock: the first a CPU takes is its own (LockGuard, IpcGuard); a second
   (Scheduler::HomeLock) only with E held, never a third, and two in CPU index order,
   the lower first: HomeLock of a lower CPU lets go of the CPU's own, takes the other
   and then its own again (both with E held) */
inline lockS(c, x) {
  assert(slk[x] == NOCPU && zlk != c);
  assert((NS(c) == 0 && (x == c - 1 || elk == c)) ||
         (NS(c) == 1 && elk == c && slk[x - 1] == c));  /* held: S[x-1], so x is S1 */
  slk[x] = c
}
inline unlockS(c, x) { assert(slk[x] == c); slk[x] = NOCPU }
/* Scheduler::zombies_lock_: a leaf (whatever else the CPU holds; nothing under it) */
inline lockZ(c) { assert(zlk == NOCPU); zlk = c }
inline unlockZ(c) { assert(zlk == c); zlk = NOCPU }
/* IpcGuard: E, then CPU c's own scheduler lock (the caller's guard waits for both) */
inline ipc_guard(c) { lockE(c); lockS(c, c - 1) }
inline ipc_unguard(c) { unlockS(c, c - 1); unlockE(c) }

inline rq_push(t) { rq[rq_len] = t; rq_len++ }
inline rq_pop(t)  { t = rq[0]; rq[0] = rq[1]; rq[1] = 0; rq_len-- }
/* Scheduler::remove_ready_locked(t), t on the ready queue */
inline rq_remove(t) {
  if
  :: rq[0] == t -> rq[0] = rq[1]; rq[1] = 0
  :: else -> assert(rq_len == 2 && rq[1] == t); rq[1] = 0
  fi;
  rq_len--
}

/* Scheduler::enqueue_locked(t), called on CPU0 for a thread homed on CPU1 (CPU0 holds
   S1 as its second scheduler lock) */
inline enqueue_locked(t) {
  assert(slk[S1] == CPU0 && home[t] == CPU1);
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

/* Scheduler::donate_locked(t) -> donate_elsewhere_locked, on CPU0 with S1 held (the
   wake's HomeLock): "wake there, now".  CPU1 gets t as its donate target (unless it
   has one) and the notify; the end of that interrupt, or the idle loop's next pass,
   runs it (schedule_locked looks at the target itself, so a target gone by then --
   a kill, a move -- preempts nothing).  An idle CPU1 whose queues hold t first was
   told by the wake, and gets no target. */
inline donate_locked(t) {
  assert(slk[S1] == CPU0 && home[t] == CPU1 && state[t] == READY);
  if
  :: dt1 == NONE && (cur1 != I1 || hq_b || rq[0] != t) ->
     dt1 = t; owed = (cur1 == B || cur1 == I1);  /* need_resched_ is left alone */
#ifndef BUG_DONATE_NO_NOTIFY
     pend1 = 1;
#endif
     if
     :: cur1 == I1 -> REACH(16);
        printf("CPU0: %d runs on idle CPU1 before %d queued first: its donate target\n", t, rq[0])
     :: else -> REACH(15); printf("CPU0: %d runs on CPU1 now: its donate target, notify_cpu(1)\n", t)
     fi
  :: else
  fi
}

/* Scheduler::schedule_locked(honor) + the bookkeeping half of switch_locked(), on CPU1.
   enter_switch_locked() has let go of E first (when held): S1 is the one lock left.
   The donate target is consumed by every switch through it; honoured (`honor`: every switch
   but BUG_IDLE_IGNORES_TARGET's idle_once) when it is Ready and homed here: it runs, and a running prev
   waits at the front of the hand-off queue (only B is ever preempted: W is the
   only target, and it is Blocked when it becomes one).  Else the hand-off queue,
   then the round robin. */
inline schedule_locked1(prev, nxt, honor) {
  if :: elk == CPU1 -> unlockE(CPU1) :: else fi;  /* enter_switch_locked */
  assert(slk[S1] == CPU1 && NS(CPU1) == 1 && elk != CPU1);
  assert(cur1 == prev && run1 == prev);
  nxt = NONE;
  if
  :: honor && dt1 != NONE ->
     if
     :: state[dt1] == READY && home[dt1] == CPU1 && dt1 != prev && dt1 != I1 ->
        rq_remove(dt1); nxt = dt1; REACH(14);
        printf("CPU1: the donation to %d is taken\n", dt1)
     :: else
     fi
  :: else
  fi;
  dt1 = NONE;
  if
  :: state[prev] == RUNNING && prev != I1 ->      /* preempt_locked: a preemption */
     assert(prev == B); state[prev] = READY;
     if :: nxt != NONE -> hq_b = 1 :: else -> rq_push(prev) fi
  :: state[prev] == RUNNING && prev == I1 -> state[prev] = READY  /* never queued */
  :: else
  fi;
  if
  :: nxt != NONE
  :: else ->
     if
     :: hq_b -> nxt = B; hq_b = 0
     :: else ->
        if :: rq_len > 0 -> rq_pop(nxt) :: else -> nxt = I1 fi
     fi
  fi;
  if :: prev == B || nxt == W -> owed = 0 :: else fi;  /* W ran: nothing owed */
  nr1 = 0;                                        /* switch_locked */
  state[nxt] = RUNNING; cur1 = nxt;               /* switch_locked: current_ = &next */
  printf("CPU1: switch from %d to %d\n", prev, nxt)
}

/* Cpu::switch_context (switch_context_leaving_stack alike): CPU1 saves prev's
   registers on prev's stack and goes on on next's.  S1 stays held by CPU1: the thread
   switched to releases it. */
inline switch_context(prev) {
#ifdef BUG_RELEASE_BEFORE_SWITCH
  atomic { unlockS(CPU1, S1);                     /* released while still on prev's stack */
           printf("CPU1: S1 released while still on %d's stack\n", prev) }
#endif
  atomic {
    assert(run1 == prev && stk[prev] == CPU1 && !freed[prev]);
    stk[prev] = NOCPU;
    assert(home[cur1] == CPU1 && stk[cur1] == NOCPU && !freed[cur1]);
    stk[cur1] = CPU1; run1 = cur1
  }
}

/* the thread switched to: S1 handed over is CPU1's, and the only lock CPU1 holds;
   release it (LockGuard or IpcGuard of the code it returns into, or finish_switch_in) */
inline release_handed_over() {
#ifndef BUG_RELEASE_BEFORE_SWITCH
  assert(elk != CPU1 && NS(CPU1) == 1); unlockS(CPU1, S1)
#else
  skip
#endif
}

/* a notify taken while W or B runs: on_notify; preempt_if_needed (S1): current_ is
   not the idle thread, nothing to do */
inline irq_window_thread() {
  if
  :: pend1 -> atomic { slk[S1] == NOCPU -> pend1 = 0; REACH(3) }
  :: else
  fi
}

/* Scheduler::exit_current() of t on CPU1: IpcGuard (E + S1); Dead; bury_locked: the
   reaper's home lock (HomeLock of CPU0, the lower: S1 let go, S0, S1 again), then
   under it the push on the zombie list (Z) and wake_at_home_locked(reaper), S0 let
   go; schedule_locked(true) (E released), switch away for good */
inline push_zombie(t) {
  atomic { zlk == NOCPU -> lockZ(CPU1); zq[zq_len] = t; zq_len++; unlockZ(CPU1) }
}
inline bury_locked(t) {
#ifdef BUG_PUSH_BEFORE_GAP
  push_zombie(t);               /* before HomeLock's gap: the reaper may find it there */
#endif
#ifndef BUG_S_AGAINST_ORDER
  unlockS(CPU1, S1);
  atomic { slk[S0] == NOCPU -> lockS(CPU1, S0) }
  atomic { slk[S1] == NOCPU -> lockS(CPU1, S1) }
#else
  atomic { slk[S0] == NOCPU -> slk[S0] = CPU1 }  /* S0 while S1 is held: the order left out */
#endif
#if !defined(BUG_PUSH_BEFORE_GAP) && !defined(BUG_WAKE_BEFORE_PUSH)
  push_zombie(t);
#endif
  atomic { if :: rst == BLOCKED -> rst = READY; REACH(12);
                 printf("CPU1: %d wakes the reaper\n", t)
              :: else fi;
           unlockS(CPU1, S0) }
#ifdef BUG_WAKE_BEFORE_PUSH
  push_zombie(t);               /* after the wake, outside the reaper's lock */
#endif
}
inline exit_current(t, nxt) {
  atomic { run1 == t && elk == NOCPU && slk[S1] == NOCPU -> ipc_guard(CPU1); if1 = 0;
           assert(cur1 == t && state[t] == RUNNING);
           state[t] = DEAD; printf("CPU1: %d exits\n", t) }
  bury_locked(t);
  atomic { schedule_locked1(t, nxt, 1) }
  switch_context(t)
}

proctype Receiver() {           /* W: NROUNDS x Endpoint::recv -> block_current_locked */
  byte nxt;
  do
  :: ran_w < NROUNDS ->
     /* IpcGuard (E + S1, interrupts off); no sender: mark_current_blocked_locked(&receivers_),
        then schedule_locked: E released, S1 handed over */
     atomic { run1 == W && elk == NOCPU && slk[S1] == NOCPU -> ipc_guard(CPU1); if1 = 0;
              assert(state[W] == RUNNING && cur1 == W);
              state[W] = BLOCKED; wq_w = 1; printf("CPU1: W blocks on receivers_\n");
              schedule_locked1(W, nxt, 1) }
     switch_context(W);
     /* switched to again: back in block_current_locked -> Endpoint::recv's IpcGuard,
        which finds E released already */
     atomic { run1 == W -> assert(state[W] == RUNNING && cur1 == W && woken_w == ran_w + 1);
              release_handed_over(); if1 = 1; ran_w++; printf("CPU1: W runs again\n") }
     irq_window_thread()
  :: else -> break
  od;
  exit_current(W, nxt)
}

/* B: mk_thread_start -> finish_switch_in; it runs with interrupts on, so a pending
   notify is taken before its next step: on_notify, then preempt_if_needed (S1), which
   switches when need_resched_ is set (preempt_locked), honouring the donate target
   ("wake there, now": W runs, B waits at the front of the hand-off queue and runs
   again when W blocks or exits); then exit_current */
proctype Busy() {
  byte nxt;
  atomic { run1 == B -> assert(state[B] == RUNNING && cur1 == B);
           release_handed_over(); if1 = 1 }     /* lock_.unlock(true) */
  do
  :: atomic { run1 == B && pend1 && slk[S1] == NOCPU -> pend1 = 0; if1 = 0; lockS(CPU1, S1);
              REACH(3) }
     if
#ifndef BUG_PREEMPT_NEEDS_RESCHED
     :: nr1 || (dt1 != NONE && state[dt1] == READY) ->   /* preempt_locked: donated */
#else
     :: nr1 ->                  /* need_resched_ alone */
#endif
        atomic { schedule_locked1(B, nxt, dt1 != NONE) }
        switch_context(B);
        atomic { run1 == B -> assert(state[B] == RUNNING && cur1 == B);
                 release_handed_over(); if1 = 1; printf("CPU1: B runs again\n") }
     :: else -> atomic { unlockS(CPU1, S1); if1 = 1 }   /* nothing to do */
     fi
  :: atomic { run1 == B && !pend1 && elk == NOCPU && slk[S1] == NOCPU ->
              assert(!owed);    /* a donation to W while B ran: W ran first */
              ipc_guard(CPU1); if1 = 0;
              assert(cur1 == B && state[B] == RUNNING);
              state[B] = DEAD; printf("CPU1: %d exits\n", B) }
     break
  od;
  bury_locked(B);
  atomic { schedule_locked1(B, nxt, 1) }
  switch_context(B)
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
  /* idle_once: save_and_disable_interrupts(); LockGuard (S1); any_ready_locked() */
  atomic { slk[S1] == NOCPU -> if1 = 0; lockS(CPU1, S1) }
  if
  :: ANY_READY1 ->
#ifndef BUG_IDLE_IGNORES_TARGET
     atomic { REACH(4); schedule_locked1(I1, nxt, 1) }  /* a donation from CPU0 first */
#else
     atomic { REACH(4); schedule_locked1(I1, nxt, 0) }
#endif
     switch_context(I1);
     goto resume
  :: else ->
     unlockS(CPU1, S1);         /* ~LockGuard: interrupts stay off */
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
  atomic { slk[S1] == NOCPU -> lockS(CPU1, S1) }
  if
  :: ANY_READY1 ->              /* current_ is the idle thread and work is ready */
     atomic { REACH(7); schedule_locked1(I1, nxt, dt1 != NONE) }
     switch_context(I1);
     goto resume
  :: else -> unlockS(CPU1, S1)
  fi;
#endif
#ifdef BUG_HLT_WINDOW
  if :: ret_hlt -> ret_hlt = 0; if1 = 1; goto hlt_only :: else fi;  /* iret: to the hlt */
#endif
  if1 = 1;                      /* iret; restore_interrupts(true) */
  goto top
}

/* on CPU0, with E and S0 held: HomeLock (S1, the second scheduler lock) */
inline home_lock1() {
#ifndef SECOND_S_WITHOUT_E
  lockS(CPU0, S1)
#else
  assert(slk[S1] == NOCPU); slk[S1] = CPU0       /* the order's assertion left out */
#endif
}

proctype Waker() {              /* a thread on CPU0 */
  bit started; byte sent;
  do
  :: !started ->                /* Scheduler::start(B), B homed on CPU1 */
#ifndef SECOND_S_WITHOUT_E
     atomic { FREE0 && elk == NOCPU && slk[S0] == NOCPU -> ipc_guard(CPU0) }
#else
     atomic { FREE0 && slk[S0] == NOCPU -> lockS(CPU0, S0) }   /* S0 alone, no E */
#endif
     atomic { slk[S1] == NOCPU -> home_lock1();
              assert(state[B] == CREATED); state[B] = READY; enqueue_locked(B);
              unlockS(CPU0, S1);
#ifndef SECOND_S_WITHOUT_E
              ipc_unguard(CPU0);
#else
              unlockS(CPU0, S0);
#endif
              started = 1 }
  :: sent < NROUNDS ->          /* Endpoint::send: W waits on receivers_ */
     atomic { FREE0 && elk == NOCPU && slk[S0] == NOCPU && wq_w -> ipc_guard(CPU0);
              if :: stk[W] == CPU1 -> REACH(13) :: else fi }  /* S1 not yet handed over */
     atomic { slk[S1] == NOCPU -> home_lock1();
              assert(state[W] == BLOCKED);
              assert(stk[W] == NOCPU);  /* the hand-over: CPU1 is off W's stack */
              assert(elk == CPU0); wq_w = 0;   /* end_wait_locked */
              state[W] = READY; woken_w++;
              if :: cur1 == B -> REACH(8) :: else fi;
              enqueue_locked(W);
              donate_locked(W);
              unlockS(CPU0, S1); ipc_unguard(CPU0); sent++ }
  :: started && sent == NROUNDS -> break
  od
}

proctype Reaper() {             /* reaper_entry: Thread::destroy(next_zombie()) */
  byte z; bit blk; bit got;
#ifdef BUG_REAPER_NO_LOCK
end_reaper:
  do
  :: atomic { zq_len > 0 -> z = zq[0]; zq[0] = zq[1]; zq[1] = 0; zq_len-- }  /* lock-free pop */
#else
  do
  :: atomic { FREE0 && slk[S0] == NOCPU -> lockS(CPU0, S0);   /* next_zombie: LockGuard */
              assert(rst == RUNNING) }
     atomic { zlk == NOCPU -> lockZ(CPU0);
              if
              :: zq_len > 0 -> z = zq[0]; zq[0] = zq[1]; zq[1] = 0; zq_len--; got = 1;
                 if :: stk[z] != NOCPU -> REACH(11) :: else fi
              :: else -> got = 0
              fi;
              unlockZ(CPU0);
              if
              :: !got ->                /* block_current_locked(nullptr, 0): Blocked */
                 rst = BLOCKED; blk = 1; /* under S0, handed to CPU0's next thread */
                 unlockS(CPU0, S0);     /* (CPU0 is not modelled) */
                 printf("CPU0: the reaper blocks\n")
              :: else -> unlockS(CPU0, S0)   /* next_zombie returns it */
              fi }
     if
     :: blk ->
end_reaper:
        /* woken: CPU0's scheduler runs it again (S0 handed over and released) */
        atomic { rst == READY && FREE0 && slk[S0] == NOCPU -> rst = RUNNING; blk = 0 }
     :: else ->
#ifndef REAPER_WITHOUT_E
        /* Thread::destroy: IpcGuard (E + S0) */
        atomic { FREE0 && elk == NOCPU && slk[S0] == NOCPU -> ipc_guard(CPU0) }
#else
        /* the same without E (as once the IPC lock is gone): S0, then S1 in index order */
        atomic { FREE0 && slk[S0] == NOCPU -> lockS(CPU0, S0) }
#endif
#ifndef BUG_REAPER_NO_HOME_LOCK
        /* wait_off_cpu_locked: the zombie's home lock, taken and let go */
#ifndef REAPER_WITHOUT_E
        atomic { slk[HS(z)] == NOCPU -> lockS(CPU0, HS(z)); unlockS(CPU0, HS(z)) }
#else
        atomic { slk[HS(z)] == NOCPU -> slk[HS(z)] = CPU0; slk[HS(z)] = NOCPU }
#endif
#endif
#ifndef REAPER_WITHOUT_E
        ipc_unguard(CPU0);
#else
        unlockS(CPU0, S0);
#endif
#endif
        atomic { assert(stk[z] == NOCPU && !freed[z] && state[z] == DEAD);  /* Thread::destroy */
                 freed[z] = 1; if :: z == W -> REACH(9) :: else fi;
                 printf("CPU0: the reaper frees %d\n", z); z = 0 }
#ifndef BUG_REAPER_NO_LOCK
     fi
#endif
  od
}

active proctype Check() {       /* ghost: when nothing can move any more */
end_check:
  timeout ->
  assert(elk == NOCPU && slk[S0] == NOCPU && slk[S1] == NOCPU && zlk == NOCPU);  /* 4 */
  assert(!(rq_len > 0 && halted1 && !pend1));     /* 1: a Ready thread slept through */
  assert(halted1 && rq_len == 0 && !pend1);
  assert(!hq_b && dt1 == NONE && !nr1 && !owed);
  assert(woken_w == NROUNDS && ran_w == NROUNDS && freed[W] && freed[B] && zq_len == 0);
#ifndef BUG_REAPER_NO_LOCK
  assert(rst == BLOCKED);                         /* 1: the reaper too sleeps only idle */
#endif
  assert(run1 == I1 && stk[I1] == CPU1 && stk[W] == NOCPU && stk[B] == NOCPU);
  REACH(10)
}

init {
  atomic {
    home[W] = CPU1; home[B] = CPU1; home[I1] = CPU1;
    state[W] = RUNNING; state[B] = CREATED; state[I1] = READY; rst = RUNNING;
    cur1 = W; run1 = W; stk[W] = CPU1; if1 = 1;
    run Receiver(); run Busy(); run Idle1(); run Waker(); run Reaper()
  }
}
