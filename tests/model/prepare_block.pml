/*
 * prepare_block.pml -- Promela model of the scheduler's two-step blocking API,
 * Scheduler::prepare_block() / cancel_block() / block() and the wake_pending rule of
 * Scheduler::wake_locked(), on ONE preemptive CPU (microkernel/scheduler.cpp).  What is
 * left, for code that still has it, of the old block_wake_donate.pml.  Checked by
 * tests/model/run_spin.sh.
 *
 * T (the waiter) waits until `cond` reaches 2: prepare_block(); look at the condition
 * with no lock held; cancel_block() if it holds, else block(nullptr).  Two signals
 * raise the condition, each `cond++` and wake_locked(T) in one scheduler-lock critical
 * section: a thread W, and a device IRQ that may land anywhere interrupts are on (also
 * between prepare_block() and block(), and while the timer has preempted T there).
 *
 * Negative controls (must FAIL):
 *   BUG_NO_PENDING          block() ignores wake_pending
 *   SPEC_WAKE_RUNNING_ONLY  wake_locked() sets wake_pending only for a *Running* armed
 *                           thread (the first draft's rule): T preempted (Ready) between
 *                           prepare_block() and block() loses the wake
 */
#define T    0
#define W    1
#define IDLE 2
#define NT   2
#define NONE 255

mtype = { RUNNING, READY, BLOCKED, DEAD };     /* ThreadState */

byte  current;                  /* Scheduler::current_ */
byte  sched_lock = NONE;        /* Scheduler::lock_ */
byte  rq[NT];                   /* Scheduler::ready_ (FIFO) */
byte  rq_len;
mtype state[NT + 1];            /* Thread::state */
bit   block_armed[NT];          /* Thread::block_armed */
bit   wake_pending[NT];         /* Thread::wake_pending */
byte  cond;                     /* the condition T waits for (signals so far) */
bit   irq_done;                 /* the device IRQ fired */
byte  budget;                   /* preemptions allowed before the next thread step */
byte  nxt, ii;

#define STEP budget = 2

inline rq_push(t) { rq[rq_len] = t; rq_len++ }
inline rq_pop(t) {
  t = rq[0]; ii = 1;
  do :: ii < rq_len -> rq[ii - 1] = rq[ii]; ii++ :: else -> break od;
  rq_len--; rq[rq_len] = 0; ii = 0
}

/* Scheduler::switch_locked(): the incoming thread releases the lock */
inline switch_locked(t) {
  state[t] = RUNNING; current = t; sched_lock = NONE; nxt = 0;
  assert(state[T] != READY || rq[0] == T || rq[1] == T)
}

/* Scheduler::schedule_locked(): the current thread is Blocked, Dead or Running (Ready
   again: a preemption) */
inline schedule_locked() {
  assert(sched_lock == current);
  if
  :: state[current] == RUNNING && current != IDLE -> state[current] = READY; rq_push(current)
  :: state[current] == RUNNING && current == IDLE -> state[current] = READY
  :: else
  fi;
  if :: rq_len > 0 -> rq_pop(nxt) :: else -> nxt = IDLE fi;
  switch_locked(nxt)
}

/* Scheduler::wake_locked(t) */
inline wake_locked(t) {
  assert(sched_lock != NONE);
  if
  :: state[t] == BLOCKED -> state[t] = READY; rq_push(t)
#ifdef SPEC_WAKE_RUNNING_ONLY
  :: state[t] == RUNNING && block_armed[t] -> wake_pending[t] = 1
#else
  :: state[t] != BLOCKED && state[t] != DEAD && block_armed[t] -> wake_pending[t] = 1
#endif
  :: else                                      /* harmless, counted */
  fi
}

/* a signal: cond++ and wake_locked(T) in one critical section */
inline signal_locked() { cond++; wake_locked(T) }

proctype Waiter() {           /* T */
  do
  :: d_step { current == T -> STEP; assert(sched_lock == NONE);   /* prepare_block() */
       block_armed[T] = 1; wake_pending[T] = 0 }
     if
     :: d_step { current == T && cond == 2 -> STEP;               /* cancel_block() */
          block_armed[T] = 0; wake_pending[T] = 0 };
        break
     :: d_step { current == T && cond < 2 -> STEP }
        /* no lock held: a wake (W, the IRQ) or a preemption may land here */
        d_step { current == T -> STEP;                            /* block(nullptr) */
          assert(sched_lock == NONE && block_armed[T]); sched_lock = T;
          if
#ifndef BUG_NO_PENDING
          :: wake_pending[T] -> wake_pending[T] = 0; block_armed[T] = 0; sched_lock = NONE
#endif
          :: else ->                                 /* block_current_locked(nullptr, 0) */
             block_armed[T] = 0; wake_pending[T] = 0; state[T] = BLOCKED;
             schedule_locked()
          fi }
     fi
  od;
  atomic { current == T -> STEP; sched_lock = T; state[T] = DEAD; schedule_locked() }  /* exit_current() */
}

proctype Signaller() {        /* W: Scheduler::wake(T) after raising the condition */
  d_step { current == W -> STEP; assert(sched_lock == NONE); sched_lock = W;
           signal_locked(); sched_lock = NONE };
  d_step { current == W -> STEP; sched_lock = W; state[W] = DEAD; schedule_locked() }
}

/* Scheduler::on_timer_tick() + preempt_if_needed(): round robin */
active proctype Timer() {
end_timer:
  do
  :: atomic { sched_lock == NONE && budget > 0 && current != IDLE && rq_len > 0 ->
       budget--; sched_lock = current; schedule_locked() }
  od
}

/* a device IRQ whose handler signals T (interrupt context: it only wakes) */
active proctype DevIrq() {
  atomic { sched_lock == NONE && state[current] == RUNNING ->
    sched_lock = current; irq_done = 1; signal_locked(); sched_lock = NONE }
}

/* Scheduler::idle_once(); with nothing ready after the IRQ, nothing can wake T again:
   it must have seen the condition and ended (no lost wake-up) */
proctype Idle() {
end_idle:
  do
  :: d_step { current == IDLE && rq_len > 0 -> sched_lock = IDLE; schedule_locked() }
  :: atomic { current == IDLE && rq_len == 0 && irq_done ->
       assert(state[T] == DEAD && state[W] == DEAD && cond == 2) };
     break
  od
}

init {
  atomic {
    state[T] = READY; state[W] = READY; state[IDLE] = READY;
    if :: rq_push(T); rq_push(W) :: rq_push(W); rq_push(T) fi;
    run Waiter(); run Signaller(); run Idle();
    rq_pop(nxt); state[nxt] = RUNNING; current = nxt; budget = 2; nxt = 0
  }
}
