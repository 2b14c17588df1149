/*
 * block_wake_donate.pml -- Promela model of the kernel's block / wake / donate
 * protocol on ONE preemptive CPU.  Checked exhaustively by tests/model/run_spin.sh.
 *
 * Threads: NW waiters (consumers, Endpoint::recv -> block_on), NP producers
 * (wakers, Endpoint::send -> wake + unblock_yield).  Producer 0 (JOINER) then
 * waits for "all waiters done" with the generic prepare_block()/block() API;
 * every waiter signals it with done++ + unblock_yield(JOINER).  Plus the idle
 * thread, the timer interrupt and one device IRQ.  See README.md for the C++ mapping
 * (comments use the design names; in microkernel/scheduler.* PerCpu::current /
 * sched_lock_ / PerCpu::donate_target are Scheduler::current_ / lock_ / donate_target_).
 *
 * Build-time switches (spin -DXXX -a):
 *   BUGGY_NO_LOCK          negative control: block_on drops Endpoint::lock_ between
 *                          the condition check and linking/sleeping
 *   BUGGY_NO_PENDING       negative control: block() ignores Thread::wake_pending
 *   BUGGY_SLEEP_HOLDING_EP negative control for the -DNP run: block_on sleeps still holding
 *                          Endpoint::lock_ -> the others spin forever (livelock)
 *   SPEC_WAKE_RUNNING_ONLY wake_locked() sets wake_pending only for a *Running*
 *                          armed thread (the literal first-draft rule); an armed
 *                          but preempted (Ready) thread gets a no-op -> lost wake-up
 *   NW, NP, IPW            sizes (defaults 2, 2, 2)
 */
#ifndef NW
#define NW 2                    /* waiter threads: ids 0..NW-1 */
#endif
#ifndef NP
#define NP 2                    /* producer threads: ids NW..NT-1 */
#endif
#ifndef IPW
#define IPW 2                   /* items each waiter consumes */
#endif
#define NT     (NW + NP)        /* real threads */
#define IDLE   NT               /* PerCpu idle thread (never queued) */
#define NONE   255              /* no thread / no queue / lock free */
#define EPQ    WQ               /* the Endpoint's WaitQueue (value of Thread::waiting_on) */
#define JOINER NW               /* producer that joins via prepare_block()/block() */
#define TOTAL  (NW * IPW)       /* items produced == items consumed */
#define IPP    (TOTAL / NP)     /* items per producer (TOTAL % NP must be 0) */

mtype = { RUNNING, READY, BLOCKED, DEAD };   /* Thread::state (DEAD = exited) */

/* ---- per-CPU scheduler state (struct PerCpu / class Scheduler) ---- */
byte  current;                  /* PerCpu::current */
/* queues: id RQ = PerCpu ready queue, id WQ = the Endpoint's WaitQueue; both FIFO,
   element i of queue x is QE(x, i), QE(x, 0) = head, qlen[x] = length */
#define RQ 0
#define WQ 1
byte  qa[2 * NT];
byte  qlen[2];
#define QE(x, i) qa[(x) * NT + (i)]
#define rq_len qlen[RQ]
#define wq_len qlen[WQ]
byte  donate_target = NONE;     /* PerCpu::donate_target (set_donate_target()) */
byte  sched_lock = NONE;        /* SpinLock sched_lock_: holder id or NONE; held => IF=0 */
bit   irq_off[NT + 1];          /* RFLAGS.IF == 0 in the thread's context (cli ... sti) */

/* ---- per-thread state (class Thread), index = thread id, IDLE included ---- */
mtype state[NT + 1];            /* Thread::state */
byte  waiting_on[NT + 1];       /* Thread::waiting_on (EPQ or NONE) */
bit   block_armed[NT + 1];      /* Thread::block_armed  (prepare_block()) */
bit   wake_pending[NT + 1];     /* Thread::wake_pending (wake raced prepare_block/block) */

/* ---- the endpoint (class Endpoint) ---- */
byte  ep_lock = NONE;           /* Endpoint::lock_: holder id or NONE (lock order: before sched_lock_) */
byte  items;                    /* Endpoint condition: messages available */
byte  done;                     /* join condition: waiters finished (atomic counter in C++) */
bit   irq_seen;                 /* join condition: the device IRQ has signalled */
#define JOIN_COND (done == NW && irq_seen)

/* ---- ghost / bookkeeping (not in the C++) ---- */
byte  produced, consumed;       /* totals, for the quiescence check */
byte  ticket[NT];               /* arrival ticket while linked on wq, 0 otherwise (FIFO check) */
byte  next_ticket;
byte  donor = NONE;             /* who set donate_target: it must be consumed by that thread's yield */
byte  budget;                   /* timer ticks allowed before the next thread step (unbounded while
                                   current may spin on a held Endpoint::lock_): rules out pure
                                   preemption ping-pong, so every fair run terminates (-DNP run) */
byte  ii, jj, cr, cw, nxt;      /* scratch inside one atomic step, zeroed after use (canonical
                                   states; `hidden` is unsafe here: pan does not restore it) */

#define STEP  budget = NT       /* a thread made a step: timer may preempt again */

/* ---------------- queues (intrusive lists in C++: O(1) unlink) ---------------- */
inline q_push(x, t) { assert(qlen[x] < NT); QE(x, qlen[x]) = t; qlen[x]++ }
inline q_remove(x, t) {
  ii = 0;
  do
  :: ii >= qlen[x] -> assert(false)         /* unlinking a thread that is not linked */
  :: ii < qlen[x] && QE(x, ii) != t -> ii++
  :: ii < qlen[x] && QE(x, ii) == t -> break
  od;
  do
  :: ii + 1 < qlen[x] -> QE(x, ii) = QE(x, ii + 1); ii++
  :: else -> break
  od;
  qlen[x]--; QE(x, qlen[x]) = 0; ii = 0
}
inline q_pop(x, t) { assert(qlen[x] > 0); t = QE(x, 0); q_remove(x, t) }

/* (3) queue invariants: every thread is on at most one queue; Ready <=> on the ready
   queue; Blocked on exactly the queue named by waiting_on; only `current` is Running. */
inline inv() {
  assert(state[current] == RUNNING);
  jj = 0;
  do
  :: jj < NT ->
     cr = 0; ii = 0;
     do :: ii < rq_len -> cr = cr + (QE(RQ, ii) == jj -> 1 : 0); ii++ :: else -> break od;
     cw = 0; ii = 0;
     do :: ii < wq_len -> cw = cw + (QE(WQ, ii) == jj -> 1 : 0); ii++ :: else -> break od;
     assert(cr + cw <= 1);
     assert((state[jj] == READY) == (cr == 1));
     assert((state[jj] == RUNNING) == (jj == current));
     assert(state[jj] == BLOCKED || waiting_on[jj] == NONE);
     assert(state[jj] != BLOCKED || (cw == 1) == (waiting_on[jj] == EPQ));
     assert(cw == 0 || state[jj] == BLOCKED);
     jj++
  :: else -> break
  od;
  ii = 0; jj = 0; cr = 0; cw = 0
}

/* context switch; the incoming thread releases sched_lock_ (finish_switch).  A thread that
   resumes inside yield_now() returns with IF=0 (iretq) and executes sti next; nothing can
   run in between on one CPU, so that sti is folded into the switch-in (irq_off[t] = 0). */
inline switch_to(t) {
  assert(t == IDLE || state[t] == READY);
  state[t] = RUNNING; current = t; sched_lock = NONE; irq_off[t] = 0;
  printf("    [cpu runs %d]\n", t);
  inv(); nxt = 0
}

/* Scheduler::schedule_locked(): caller holds sched_lock_ and has already made itself
   non-Running (Blocked / Dead).  Head of the ready queue, or idle if it is empty. */
inline schedule_locked() {
  assert(sched_lock == current && state[current] != RUNNING);
  assert(donate_target == NONE);                  /* a block/exit never meets a donation */
  if
  :: rq_len > 0 -> q_pop(RQ, nxt)
  :: else -> nxt = IDLE
  fi;
  switch_to(nxt)
}

/* Scheduler::wake_locked(Thread& t): caller holds sched_lock_ */
inline wake_locked(t) {
  assert(sched_lock == current && state[t] != DEAD);    /* t == current: from an IRQ */
  if
  :: state[t] == BLOCKED ->                       /* unlink (O(1)), make Ready */
     if
     :: waiting_on[t] == EPQ -> q_remove(WQ, t); waiting_on[t] = NONE; ticket[t] = 0;
        if :: wq_len == 0 -> next_ticket = 0 :: else fi  /* tickets only compared while queued */
     :: else
     fi;
     state[t] = READY; q_push(RQ, t);
     printf("  wake(T%d): Blocked -> Ready\n", t)
#ifdef SPEC_WAKE_RUNNING_ONLY
  :: state[t] == RUNNING && block_armed[t] -> wake_pending[t] = 1;
     printf("  wake(T%d): armed -> wake_pending\n", t)
#else
  :: state[t] != BLOCKED && block_armed[t] ->    /* Running OR preempted (Ready) */
     wake_pending[t] = 1; printf("  wake(T%d): armed -> wake_pending\n", t)
#endif
  :: else -> printf("  wake(T%d): no-op\n", t)  /* not blocking: harmless no-op (counted in C++) */
  fi;
  inv()
}

/* Scheduler::on_yield_vector(): int 0x50 handler, entered with IF=0 */
inline on_yield_vector(me) {
  assert(sched_lock == NONE && irq_off[me]); sched_lock = me;
  state[me] = READY; q_push(RQ, me);      /* yielding thread back on the ready queue */
  if
  :: donate_target != NONE && state[donate_target] == READY && donate_target != me ->
     assert(donor == me);                         /* (4) consumed by the yield of its setter */
     q_remove(RQ, donate_target);
     nxt = donate_target;                         /* (4) the Ready target is run next */
     printf("T%d yield: donate to T%d\n", me, nxt)
  :: else -> q_pop(RQ, nxt);              /* target ran & blocked/exited: round robin */
     printf("T%d yield: target T%d not Ready, round robin -> T%d\n", me, donate_target, nxt)
  fi;
  donate_target = NONE; donor = NONE;             /* consumed by exactly one yield */
  switch_to(nxt)
}

/* unblock_yield(t), second half (only if wake(t) returned true), entered with NO lock
   held: cli; Scheduler::set_donate_target(t); yield_now() = int 0x50; (resumed) sti */
inline donate_yield(me, t) {
  d_step { current == me ->
    assert(sched_lock == NONE && ep_lock != me);
    irq_off[me] = 1;                                            /* cli */
    assert(donate_target == NONE && donor == NONE);             /* (4) never stale / reused */
    donate_target = t; donor = me; STEP }                       /* set_donate_target(t) */
  d_step { current == me -> on_yield_vector(me) }  /* yield_now(): int 0x50; resumed: sti */
}

inline thread_exit(me) {        /* Thread exit: Dead, schedule away, never resumed */
  atomic { current == me ->
    assert(sched_lock == NONE && ep_lock != me && !irq_off[me]);
    sched_lock = me; state[me] = DEAD; printf("T%d exits\n", me); schedule_locked() }
}

/* ---------------- waiter: Endpoint::recv -> block_on(&wq) ---------------- */
proctype Waiter(byte me) {
  byte n;                                         /* items consumed */
  bit woke;                                       /* wake_locked() returned true */
  do
  :: n < IPW ->
     do                                           /* block_on(): loop until an item is taken */
     :: d_step { current == me && ep_lock == NONE -> ep_lock = me; STEP }  /* Endpoint::lock_.lock() */
        if
        :: d_step { current == me && items > 0 -> /* condition holds: consume, unlock, done */
             items--; consumed++; n++; ep_lock = NONE; STEP
             printf("T%d recv: took item (%d left)\n", me, items) }
           break
        :: d_step { current == me && items == 0 -> STEP
#ifdef BUGGY_NO_LOCK
             ; ep_lock = NONE;  /* BUG: unlock before linking: a send here finds wq empty */
             printf("T%d recv: no item, BUG: Endpoint::lock_ dropped before sleeping\n", me)
#endif
           }
           /* preemption possible here (Endpoint::lock_ does not disable IRQs in this model) */
           atomic { current == me ->              /* Scheduler::block_current_locked(&wq) */
             assert(sched_lock == NONE); sched_lock = me;             /* sched_lock_ (IF=0) */
             state[me] = BLOCKED; waiting_on[me] = EPQ;
             next_ticket++; ticket[me] = next_ticket; q_push(WQ, me); /* link, FIFO */
#if !defined(BUGGY_NO_LOCK) && !defined(BUGGY_SLEEP_HOLDING_EP)
             assert(ep_lock == me); ep_lock = NONE;  /* drop Endpoint::lock_, keep sched_lock_ */
#endif
             printf("T%d recv: no item, Blocked on wq\n", me);
             schedule_locked() }                  /* switch away; resumed by wake_locked() */
           /* woken: loop back and re-check the condition */
        fi
     od
  :: else -> break
  od;
  /* all items taken: signal the joiner -- done++ and wake_locked(JOINER) under sched_lock_ */
  atomic { current == me -> assert(sched_lock == NONE); sched_lock = me;
           done++; printf("T%d done (%d)\n", me, done);
           woke = (state[JOINER] == BLOCKED -> 1 : 0); wake_locked(JOINER); sched_lock = NONE; STEP }
  if                                              /* unblock_yield(JOINER): donates only */
  :: woke -> donate_yield(me, JOINER)             /* if wake() made it Ready */
  :: else
  fi;
  thread_exit(me)
}

/* ---------------- producer: Endpoint::send -> wake + unblock_yield ---------------- */
proctype Producer(byte me) {
  byte i, t = NONE;
  do
  :: i < IPP ->
     d_step { current == me && ep_lock == NONE -> ep_lock = me; STEP }     /* Endpoint::lock_.lock() */
     d_step { current == me ->
       items++; produced++; i++;                  /* produce */
       printf("T%d send: item (%d queued)\n", me, items);
       if
       :: wq_len > 0 ->                           /* a waiter is queued: take the FIFO head */
          t = QE(WQ, 0);
          ii = 1;                                 /* (5) FIFO: head has the oldest ticket */
          do :: ii < wq_len -> assert(ticket[t] < ticket[QE(WQ, ii)]); ii++ :: else -> break od;
          assert(sched_lock == NONE); sched_lock = me;                /* sched_lock_ */
          wake_locked(t);                         /* Scheduler::wake_locked(t) */
          sched_lock = NONE
       :: else
       fi;
       STEP }
     /* preemption possible here: t may run and spin on Endpoint::lock_ */
     d_step { current == me -> ep_lock = NONE; STEP }                   /* Endpoint::lock_.unlock() */
     /* preemption possible here: t may run, consume and block again / exit */
     if
     :: t != NONE -> donate_yield(me, t); t = NONE                     /* unblock_yield(t) */
     :: else
     fi
  :: else -> break
  od;
  if
  :: me == JOINER ->            /* generic API: wait until every waiter is done */
     do
     :: d_step { current == me -> assert(sched_lock == NONE);
          block_armed[me] = 1; wake_pending[me] = 0; STEP               /* Scheduler::prepare_block() */
          printf("T%d join: prepare_block\n", me) }
        /* sched_lock_ dropped: preemption and wakes possible here */
        if
        :: d_step { current == me && JOIN_COND -> block_armed[me] = 0; STEP }; break  /* cancel */
        :: d_step { current == me && !JOIN_COND -> STEP }
           /* ... and here (the race block() must catch) */
           d_step { current == me ->                                   /* Scheduler::block() */
             assert(sched_lock == NONE && block_armed[me]); sched_lock = me;
             if
#ifndef BUGGY_NO_PENDING
             :: wake_pending[me] ->               /* wake raced the block: caught, don't sleep */
                block_armed[me] = 0; wake_pending[me] = 0; sched_lock = NONE;
                printf("T%d block(): wake_pending, caught\n", me)
#endif
             :: else ->
                block_armed[me] = 0; wake_pending[me] = 0;
                state[me] = BLOCKED; printf("T%d block(): sleeps\n", me);
                schedule_locked()                                      /* sleep (waiting_on none) */
             fi }
        fi
     od
  :: else
  fi;
  thread_exit(me)
}

/* ---------------- Scheduler::on_timer_tick(): IRQ0, round robin ---------------- */
active proctype Timer() {
end_timer:
  do
  :: atomic { sched_lock == NONE && !irq_off[current] && rq_len > 0 &&
              (budget > 0 || (ep_lock != NONE && ep_lock != current)) ->  /* or: may be spinning */
       if :: budget > 0 -> budget-- :: else fi;
       assert(donate_target == NONE);             /* (4) timer never sees / consumes a donation */
       sched_lock = current; printf("timer tick (T%d preempted)\n", current);
       if :: current != IDLE -> state[current] = READY; q_push(RQ, current) :: else fi;
       q_pop(RQ, nxt);
       switch_to(nxt) }
  od
}

/* ---------------- idle thread: runs only when the ready queue is empty ---------------- */
proctype Idle() {
end_idle:
  do
  :: d_step { current == IDLE && rq_len > 0 ->   /* woke from hlt with work: schedule */
       sched_lock = IDLE; state[IDLE] = READY; q_pop(RQ, nxt); switch_to(nxt) }
  :: d_step { current == IDLE && rq_len == 0 && irq_seen ->
       /* No interrupt source is left, so nothing can ever be woken again.  (1)+(2): idle
          may then only run when all work is done -- every produced item consumed, nobody
          Blocked (a Blocked thread here = lost wake-up / deadlock). */
       assert(wq_len == 0 && donate_target == NONE);
       assert(produced == TOTAL && consumed == TOTAL && items == 0 && done == NW);
       ii = 0;
       do :: ii < NT -> assert(state[ii] == DEAD); ii++ :: else -> break od; ii = 0 };
     break
  od
}

/* ------- device IRQ (fires once, any time IF=1 and sched_lock_ free): its handler ------- */
/* signals the joiner from interrupt context: wake_locked(JOINER) may find it Running with
   block_armed (IRQ hit between prepare_block() and block()), Ready, Blocked, or idle running */
active proctype DevIrq() {
  atomic { sched_lock == NONE && !irq_off[current] && state[current] == RUNNING ->  /* booted */
    sched_lock = current; irq_seen = 1;
    printf("device IRQ (T%d interrupted)\n", current);
    wake_locked(JOINER); sched_lock = NONE }
}

init {
  byte k, pos;                                    /* locals: restored on backtracking */
  atomic {
    ii = 0;
    do :: ii <= NT -> state[ii] = READY; waiting_on[ii] = NONE; ii++ :: else -> break od;
    /* nondeterministic initial ready-queue order: insert thread k at any position */
    do
    :: k < NT ->
       pos = rq_len;
       do :: pos > 0 -> pos-- :: break od;
       ii = rq_len;
       do :: ii > pos -> QE(RQ, ii) = QE(RQ, ii - 1); ii-- :: else -> break od;
       QE(RQ, pos) = k; rq_len++; k++
    :: else -> break
    od;
    k = 0; pos = 0;
    ii = 0;
    do :: ii < NW -> run Waiter(ii); ii++ :: else -> break od;
    do :: ii < NT -> run Producer(ii); ii++ :: else -> break od;
    run Idle();
    q_pop(RQ, nxt); state[nxt] = RUNNING; current = nxt; budget = NT; nxt = 0;
    inv()
  }
}
