#!/usr/bin/env bash
# run_spin.sh [workdir] -- exhaustive SPIN model checks of the IPC and scheduler models,
# one CPU (ipc_rendezvous.pml, prepare_block.pml) and two (smp_wake.pml; split_locks.pml:
# the IPC lock and one scheduler lock per CPU, a cross-CPU wake, kill or move taking the
# other CPU's scheduler lock as a second one under the IPC lock; -DMOVE: a move of a
# Ready, Blocked or running thread to the other CPU, switching_out; -DMOVE_WITHOUT_E: the
# move without the IPC lock, two scheduler locks in index order; endpoint_locks.pml:
# the design (v2) of a lock per endpoint, a server's callers queue and its callers'
# reply waits under the server's home scheduler lock (the same-CPU fast path takes
# EP[e] and one scheduler lock), two scheduler locks in CPU index order, pinned wait
# locks for the tick and the kill, moves of clients and of the server; -DSAVE: saved
# replies, a saved caller's wait under its own home scheduler lock) (tests/model/README.md)
#
# Runs (at most $SPIN_JOBS=2 at a time), each in its own directory under workdir:
#   * properties that must HOLD (errors: 0, complete search, no depth truncation)
#   * negative controls that must FAIL (spin must find the planted bug; otherwise the
#     model could not detect it and proves nothing)
#   * reachability probes that must FAIL (-DPROBE=n: the model reaches REACH(n), an
#     interleaving the properties are meant to cover)
# Exit 0 only if every run behaves as expected.  VERBOSE=1 also prints the
# counterexample narrative of each negative control.  No -DBITSTATE: searches are exhaustive.
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jobs_max=${SPIN_JOBS:-2}
depth=${SPIN_DEPTH:-200000}              # -m: max DFS depth (reached depth is ~2,100)
cc_flags=(-w -DMEMLIM=900)   # MEMLIM: MB per pan (two run at once); no BITSTATE/HC: exhaustive

for tool in spin gcc; do
    command -v "$tool" >/dev/null || { echo "run_spin.sh: '$tool' not found (apt-get install $tool)" >&2; exit 2; }
done

if [ $# -ge 1 ]; then
    work=$1; mkdir -p "$work" || exit 2; keep_work=1
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/spin-bwd.XXXXXX") || exit 2; keep_work=0
fi
work=$(cd "$work" && pwd)

# name ; expect (pass|fail|reach) ; model ; spin -D flags ; mode (safety|np|np-only|probe) ;
# fail regex (fail) or the probe numbers that must all be reached (reach) ; label
ipc=ipc_rendezvous.pml
pb=prepare_block.pml
sw=smp_wake.pml
sl=split_locks.pml
el=endpoint_locks.pml
runs=(
  "ipc_drops;pass;$ipc;-DSERVER_DROPS;safety;;ipc: 2 clients x 2 calls (C1 timed), server ReplyRecv or Recv-drop, kill"
  "ipc_destroy;pass;$ipc;-DDESTROY -DBUDGET=1;safety;;ipc: 2 clients x 2 calls, server ReplyRecv, kill, endpoint destroy"
  "ipc_sender;pass;$ipc;-DSENDER -DNCALLS=1 -DBUDGET=2;safety;;ipc: 2 clients x 1 call + a sender's Send, kill"
  "ipc_saved;pass;$ipc;-DSAVED_REPLY;safety;;ipc: 2 clients x 2 calls, server ReplyRecv or ReplySave + Reply(saved) + Recv, kill"
  "ipc_np;pass;$ipc;-DBUDGET=2;np;;ipc: termination, no non-progress cycle (2 clients x 2 calls, kill)"
  "ipc_destroy_drops;pass;$ipc;-DDESTROY -DSERVER_DROPS -DNCALLS=1;safety;;ipc: 2 clients x 1 call, server ReplyRecv or Recv-drop, kill, destroy"
  "ipc_probes;reach;$ipc;-DPROBE_ALL -DSERVER_DROPS -DDESTROY -DNCALLS=1;probe;1 2 3 4 5 6 7 8 9 10 11 12;ipc reachability probes 1-12 (README.md)"
  "ipc_probes_saved;reach;$ipc;-DPROBE_ALL -DSAVED_REPLY -DSENDER -DNCALLS=1 -DBUDGET=1;probe;13 14 15 16 17 18;ipc reachability probes 13-18 (Send, saved replies, FastPath::recv)"
  "ipc_neg_timeout_unlink;fail;$ipc;-DBUG_TIMEOUT_NO_UNLINK;safety;assertion violated|invalid end state;ipc negative control BUG_TIMEOUT_NO_UNLINK: a timeout leaves the thread on its wait queue"
  "ipc_neg_reply_seq;fail;$ipc;-DBUG_REPLY_NO_SEQ -DSERVER_DROPS;safety;assertion violated|invalid end state;ipc negative control BUG_REPLY_NO_SEQ: a reply token's call number is not checked"
  "ipc_neg_call_unlocked;fail;$ipc;-DBUG_CALL_UNLOCKED;safety;assertion violated|invalid end state;ipc negative control BUG_CALL_UNLOCKED: call drops the lock between the receiver check and the block"
  "ipc_neg_kill_no_wake;fail;$ipc;-DBUG_KILL_NO_WAKE;safety;assertion violated|invalid end state;ipc negative control BUG_KILL_NO_WAKE: kill does not wake a Blocked thread"
  "ipc_neg_switch_holding_table;fail;$ipc;-DBUG_SWITCH_HOLDING_TABLE;safety;assertion violated|invalid end state;ipc negative control BUG_SWITCH_HOLDING_TABLE: the fast path switches holding the handle-table lock"
  "ipc_neg_no_exit_on_return;fail;$ipc;-DBUG_NO_EXIT_ON_RETURN -DBUDGET=2;np-only;non-progress cycle;ipc negative control BUG_NO_EXIT_ON_RETURN: a killed thread does not end on its way to user mode (livelock)"
  "pb_safety;pass;$pb;;safety;;prepare_block/block: no lost wake-up (a thread and an IRQ signal, preemption)"
  "pb_np;pass;$pb;;np;;prepare_block/block: termination, no non-progress cycle"
  "pb_neg_no_pending;fail;$pb;-DBUG_NO_PENDING;safety;assertion violated|invalid end state;prepare_block negative control BUG_NO_PENDING: block() ignores wake_pending"
  "pb_neg_running_only;fail;$pb;-DSPEC_WAKE_RUNNING_ONLY;safety;assertion violated|invalid end state;prepare_block negative control SPEC_WAKE_RUNNING_ONLY: wake_pending only if Running"
  "ipc_neg_fast_no_cancel;fail;$ipc;-DBUG_FAST_NO_CANCEL;safety;assertion violated|invalid end state;ipc negative control BUG_FAST_NO_CANCEL: the fast path's switch keeps the partner's timeout"
  "smp_safety;pass;$sw;;safety;;smp_wake: 2 CPUs, W blocks 2x on CPU1 and is woken from CPU0, B started from CPU0, both exit, reaper"
  "smp_np;pass;$sw;;np;;smp_wake: termination, no cycle (so the end-state check covers every run)"
  "smp_hlt_window;pass;$sw;-DBUG_HLT_WINDOW;safety;;smp_wake: sti apart from hlt loses nothing while the notify's preempt_if_needed schedules"
  "smp_notify_no_preempt;pass;$sw;-DNOTIFY_NO_PREEMPT;safety;;smp_wake: a notify that only ends the hlt loses nothing while sti; hlt is atomic"
  "smp_probes;reach;$sw;-DPROBE_ALL;probe;1 2 3 4 6 7 8 9 10 11 12 13 14 15 16;smp_wake reachability probes 1-4, 6-16 (README.md)"
  "smp_probes_window;reach;$sw;-DPROBE_ALL -DBUG_HLT_WINDOW;probe;5 7;smp_wake reachability probe 5 (a notify between a separate sti and hlt)"
  "smp_neg_no_notify;fail;$sw;-DBUG_NO_NOTIFY;safety;assertion violated .*rq_len>0\)&&halted1;smp_wake negative control BUG_NO_NOTIFY: a wake queues on the idle CPU without notify_cpu"
  "smp_neg_hlt_window;fail;$sw;-DBUG_HLT_WINDOW -DNOTIFY_NO_PREEMPT;safety;assertion violated .*rq_len>0\)&&halted1;smp_wake negative control BUG_HLT_WINDOW + NOTIFY_NO_PREEMPT: sti apart from hlt, and the notify does not schedule"
  "smp_neg_release_before_switch;fail;$sw;-DBUG_RELEASE_BEFORE_SWITCH;safety;assertion violated .*stk\[;smp_wake negative control BUG_RELEASE_BEFORE_SWITCH: the lock released while still on the old thread's stack"
  "smp_neg_reaper_no_lock;fail;$sw;-DBUG_REAPER_NO_LOCK;safety;assertion violated .*stk\[z\]==0;smp_wake negative control BUG_REAPER_NO_LOCK: the reaper pops a zombie without the lock and frees its stack"
  "smp_neg_reaper_no_home_lock;fail;$sw;-DBUG_REAPER_NO_HOME_LOCK;safety;assertion violated .*stk\[z\]==0;smp_wake negative control BUG_REAPER_NO_HOME_LOCK: the reaper frees a zombie's stack without its home CPU's lock (S1)"
  "smp_neg_donate_no_notify;fail;$sw;-DBUG_DONATE_NO_NOTIFY;safety;assertion violated +!\(owed\);smp_wake negative control BUG_DONATE_NO_NOTIFY: a donation to W of busy CPU1 sets its target without the notify: B runs on"
  "smp_neg_preempt_needs_resched;fail;$sw;-DBUG_PREEMPT_NEEDS_RESCHED;safety;assertion violated +!\(owed\);smp_wake negative control BUG_PREEMPT_NEEDS_RESCHED: the notify of a donation comes, but preempt_locked switches only for need_resched_"
  "smp_neg_idle_ignores_target;fail;$sw;-DBUG_IDLE_IGNORES_TARGET;safety;assertion violated +!\(owed\);smp_wake negative control BUG_IDLE_IGNORES_TARGET: the idle loop's switch drops a donation to an idle CPU with other work queued first"
  "smp_second_s_without_e;pass;$sw;-DSECOND_S_WITHOUT_E;safety;;smp_wake: start() takes S0 then S1 without E: the index order alone keeps the CPUs from waiting for each other"
  "smp_neg_s_against_order;fail;$sw;-DSECOND_S_WITHOUT_E -DBUG_S_AGAINST_ORDER;safety;assertion violated \(+elk==0\);smp_wake negative control BUG_S_AGAINST_ORDER: the reaper's wake takes S0 holding S1, and start() takes S0 then S1 without E (deadlock)"
  "smp_neg_wake_before_push;fail;$sw;-DBUG_WAKE_BEFORE_PUSH;safety;assertion violated|invalid end state;smp_wake negative control BUG_WAKE_BEFORE_PUSH: bury_locked wakes the reaper, lets its lock go, then pushes the zombie (lost wake-up)"
  "smp_reaper_without_e;pass;$sw;-DREAPER_WITHOUT_E;safety;;smp_wake: Thread::destroy without E: the push under the reaper's lock, after HomeLock's gap, keeps the reaper off CPU1's stack"
  "smp_neg_push_before_gap;fail;$sw;-DREAPER_WITHOUT_E -DBUG_PUSH_BEFORE_GAP;safety;assertion violated .*stk\[z\]==0;smp_wake negative control BUG_PUSH_BEFORE_GAP: the zombie pushed before HomeLock's gap, the reaper without E frees the stack CPU1 is on"
  "split_safety;pass;$sl;-DKILL;safety;;split_locks: R on CPU0 (2 timed recvs), C on CPU1 (2 calls: E, S1, then S0 to wake R), CPU0's tick (S0; then E, S0), a kill of C (E, S0, then S1)"
  "split_direct;pass;$sl;-DKILL -DDIRECT;safety;;split_locks: + C0 on CPU0 calling once (the same-CPU direct switch)"
  "split_np;pass;$sl;-DKILL -DDIRECT;np;;split_locks: termination, no cycle"
  "split_probes;reach;$sl;-DPROBE_ALL -DKILL -DDIRECT;probe;1 3 5 6 10 11 12 13 14 15;split_locks reachability probes 1, 3, 5, 6, 10-15 (README.md)"
  "split_move;pass;$sl;-DKILL -DMOVE;safety;;split_locks MOVE: + a move of C to CPU0 on CPU1 under E and S1, S0 the second lock (Ready or Blocked: an interrupt of CPU1; Running: C at its user boundary, switching_out)"
  "split_move_np;pass;$sl;-DKILL -DMOVE;np;;split_locks MOVE: termination, no cycle"
  "split_probes_move;reach;$sl;-DPROBE_ALL -DKILL -DMOVE;probe;6 16 17 18 19 20;split_locks reachability probes 6, 16-20 with MOVE (README.md)"
  "split_s0_tick;pass;$sl;-DKILL -DDIRECT -DTICK_S0_ONLY;safety;;split_locks, old tick protocol TICK_S0_ONLY: the tick wakes R under S0 only, R unlinks itself"
  "split_probes_s0_tick;reach;$sl;-DPROBE_ALL -DKILL -DDIRECT -DTICK_S0_ONLY;probe;4 7 8;split_locks reachability probes 4, 7, 8 (old tick protocol TICK_S0_ONLY only)"
  "split_probes_reply_first;reach;$sl;-DPROBE_ALL -DWAKE_AFTER_E;probe;2 9;split_locks reachability probes 2, 9 (a reply before the caller's block: only if the call lets go of E before it blocks, WAKE_AFTER_E)"
  "split_neg_unlock_e_before_block;fail;$sl;-DBUG_UNLOCK_E_BEFORE_BLOCK;safety;assertion violated .*(ist==|wr\[0\]!=);split_locks negative control BUG_UNLOCK_E_BEFORE_BLOCK: recv releases E before it is Blocked under S0"
  "split_neg_cleanup_ignores_delivered;fail;$sl;-DTICK_S0_ONLY -DBUG_CLEANUP_IGNORES_DELIVERED;safety;assertion violated \(ngot==ntaken\);split_locks negative control BUG_CLEANUP_IGNORES_DELIVERED (old tick protocol): a timed-out recv drops a delivered message"
  "split_neg_block_no_reply_check;fail;$sl;-DBUG_BLOCK_NO_REPLY_CHECK;safety;assertion violated .*rst\[1\]==;split_locks negative control BUG_BLOCK_NO_REPLY_CHECK: the caller lets go of E after its wake of R and blocks later without looking for its reply"
  "split_neg_timer_takes_e;fail;$sl;-DBUG_TIMER_TAKES_E;safety;assertion violated \(\(\(elk==0\);split_locks negative control BUG_TIMER_TAKES_E: the tick takes E while holding S0 (deadlock)"
  "split_second_s_without_e;pass;$sl;-DKILL -DSECOND_S_WITHOUT_E;safety;;split_locks: the tick, S0 held without E, takes S1: the index order alone keeps the CPUs from waiting for each other"
  "split_neg_s_against_order;fail;$sl;-DKILL -DSECOND_S_WITHOUT_E -DBUG_S_AGAINST_ORDER;safety;assertion violated \(+elk==0\)|invalid end state;split_locks negative control BUG_S_AGAINST_ORDER: the call, E and S1 held, takes S0 without letting go of S1, while the tick holds S0 and takes S1 without E (deadlock)"
  "split_neg_move_takes_dest_s;fail;$sl;-DKILL -DMOVE -DBUG_MOVE_TAKES_DEST_S;safety;assertion violated \(\(\(elk==0\)|invalid end state;split_locks negative control BUG_MOVE_TAKES_DEST_S: the move takes CPU0's S lock under S1 without E, while a waker of C (reply, kill) holds E and S0 and wants S1 (deadlock)"
  "split_move_without_e;pass;$sl;-DKILL -DMOVE -DMOVE_WITHOUT_E;safety;;split_locks MOVE_WITHOUT_E: the move takes no E: S1, then S0 in index order (S1 let go: a gap), re-checks C after it; the wakers of C re-read its home once its lock is held"
  "split_move_without_e_np;pass;$sl;-DKILL -DMOVE -DMOVE_WITHOUT_E;np;;split_locks MOVE_WITHOUT_E: termination, no cycle"
  "split_probes_move_without_e;reach;$sl;-DPROBE_ALL -DKILL -DMOVE -DMOVE_WITHOUT_E;probe;15 16 17 18 19 20 21 23;split_locks reachability probes 15-21, 23 with MOVE_WITHOUT_E (C woken or killed in a move's gap; README.md)"
  "split_no_home_reread_two_cpus;pass;$sl;-DKILL -DMOVE -DMOVE_WITHOUT_E -DBUG_NO_HOME_REREAD;safety;;split_locks MOVE_WITHOUT_E + BUG_NO_HOME_REREAD must PASS: with two CPUs the wakers on CPU0 read C's home holding S0, which the move to CPU0 needs (the model cannot see a missing re-read: README.md)"
  "split_neg_move_state_before_gap;fail;$sl;-DKILL -DMOVE -DMOVE_WITHOUT_E -DBUG_MOVE_STATE_BEFORE_GAP;safety;assertion violated \(\(\(home\[cur\[c\]\]==c\);split_locks negative control BUG_MOVE_STATE_BEFORE_GAP (MOVE_WITHOUT_E): the move acts on C's state as it saw it before its gap: C woken there stays on CPU1's ready queue, homed on CPU0"
  "split_neg_no_switching_out;fail;$sl;-DKILL -DMOVE -DBUG_NO_SWITCHING_OUT;safety;assertion violated \(stk\[nxt\]==0\);split_locks negative control BUG_NO_SWITCHING_OUT: CPU0 switches to the C that moved itself without waiting for switching_out, CPU1 still on C's stack"
  "split_neg_switching_out_after_write;fail;$sl;-DKILL -DMOVE -DBUG_SWITCHING_OUT_AFTER_WRITE;safety;assertion violated \(home\[;split_locks negative control BUG_SWITCHING_OUT_AFTER_WRITE: CPU0 writes C Running before it waits for switching_out; CPU1's schedule finds C Running and requeues it on CPU1"
  "split_neg_tick_no_recheck;fail;$sl;-DBUG_TICK_NO_RECHECK;safety;assertion violated \((wr\[0\]==|ngot==ntaken);split_locks negative control BUG_TICK_NO_RECHECK: the tick, E and S0 re-taken, ends the wait it saw due without re-checking it"
  "split_neg_release_before_switch;fail;$sl;-DBUG_RELEASE_BEFORE_SWITCH;safety;assertion violated \(stk\[0\]==0\);split_locks negative control BUG_RELEASE_BEFORE_SWITCH: CPU0 releases S0 while still on the old stack"
  "split_neg_wake_after_e;fail;$sl;-DWAKE_AFTER_E;safety;assertion violated \(wr\[0\](==|!=);split_locks negative control WAKE_AFTER_E (first proposal): call_impl wakes R under S0 alone after releasing E"
  "split_neg_direct_no_state_check;fail;$sl;-DDIRECT -DDIRECT_NO_STATE_CHECK -DTICK_S0_ONLY;safety;assertion violated \(\(rql\[0\]==0\);split_locks negative control DIRECT_NO_STATE_CHECK (first proposal, old tick protocol): the direct switch ignores R's state"
  "el_kill_die;pass;$el;-DKILL -DDIE -DTWO_EP;safety;;endpoint_locks: R on CPU0 serving EP0/EP1, C1 (CPU1, 2 timed calls on EP0), C0 (CPU0, 1 timed call on EP1: the fast path), ticks of both CPUs, a kill of C1, R may die (PeerDied)"
  "el_kill_move_die;pass;$el;-DKILL -DMOVE -DDIE;safety;;endpoint_locks: one endpoint: a kill and a move of C1 to CPU0 (then R's same-CPU fast path), R may die"
  "el_move_die;pass;$el;-DMOVE -DDIE -DTWO_EP;safety;;endpoint_locks: a move of C1 to CPU0, R may die"
  "el_move_c0;pass;$el;-DMOVE_C0 -DDIE -DTWO_EP;safety;;endpoint_locks: a move of C0 to CPU1 (S0 then S1 on CPU0 while C1 may take S0 then S1 on CPU1), R may die"
  "el_r1_kill_die;pass;$el;-DR_HOME=1 -DKILL -DDIE -DTWO_EP;safety;;endpoint_locks: R on CPU1 (C1 same CPU, C0 cross: replies take S0 then S1, the tick of CPU0 takes S1 as a second lock), a kill of C1, R may die"
  "el_r1_kill_move_die;pass;$el;-DR_HOME=1 -DKILL -DMOVE -DDIE;safety;;endpoint_locks: R on CPU1, a kill and a move of C1 to CPU0 (its reply wait then on a higher S), R may die"
  "el_move_r_kill_die;pass;$el;-DMOVE_R -DKILL -DDIE;safety;;endpoint_locks: a move of R to CPU1 (its callers queue goes along), a kill of C1, R may die"
  "el_move_r;pass;$el;-DMOVE_R -DDIE -DTWO_EP;safety;;endpoint_locks: a move of R from CPU0 to CPU1 with C0 and C1 calling, R may die"
  "el_r1_move_r;pass;$el;-DR_HOME=1 -DMOVE_R -DDIE -DTWO_EP;safety;;endpoint_locks: a move of R from CPU1 to CPU0, R may die"
  "el_tick_preemptible;pass;$el;-DTICK_PREEMPTIBLE -DKILL -DDIE;safety;;endpoint_locks TICK_PREEMPTIBLE: the tick's CPU runs other code between its steps (the generation check needed), kill, R may die"
  "el_probes;reach;$el;-DPROBE_ALL -DMOVE_R -DKILL -DDIE;probe;1 2 3 4 5 6 7 9 10 11 12 13 14 15 16 17 19 22 23;endpoint_locks reachability probes 1-7, 9-17, 19, 22, 23 (README.md)"
  "el_probes_r1;reach;$el;-DPROBE_ALL -DR_HOME=1 -DMOVE_C0 -DTWO_EP;probe;8 18 20 21;endpoint_locks reachability probes 8, 18, 20, 21 (R on CPU1: a cross-CPU reply taking S0 first; a busy server)"
  "el_probes_kill;reach;$el;-DPROBE_ALL -DR_HOME=1 -DKILL -DMOVE -DDIE;probe;24 25;endpoint_locks reachability probes 24, 25 (the kill ends a reply wait under one S, or with the server's higher S as a second lock)"
  "el_neg_s_against_order;fail;$el;-DTWO_EP -DMOVE_C0 -DBUG_S_AGAINST_ORDER;safety;assertion violated \(\(\(\(lk\[0\]==0\)|invalid end state;endpoint_locks negative control BUG_S_AGAINST_ORDER: C1's call takes S1 then S0 while the move of C0 holds S0 and wants S1 (deadlock)"
  "el_neg_reply_no_server_s;fail;$el;-DBUG_REPLY_NO_SERVER_S;safety;assertion violated \(+lk\[\(2\+home\[0\]\)\];endpoint_locks negative control BUG_REPLY_NO_SERVER_S: a reply writes the caller's result under the caller's home S only (the callers queue's guard)"
  "el_neg_reply_recv_keeps_s;fail;$el;-DR_HOME=1 -DKILL -DTWO_EP -DBUG_REPLY_RECV_KEEPS_S;safety;assertion violated \(\(\(\(lk\[0\]==0\)|invalid end state;endpoint_locks negative control BUG_REPLY_RECV_KEEPS_S: a cross-CPU reply_recv takes EP[e] under its S locks (deadlock with the kill)"
  "el_neg_tick_reply_no_recheck;fail;$el;-DBUG_TICK_REPLY_NO_RECHECK;safety;assertion violated .*(cq\[t\]|res\[t\]==PENDING|state\[t\]==BLOCKED);endpoint_locks negative control BUG_TICK_REPLY_NO_RECHECK: the tick, re-locked, ends a reply wait without re-checking it (the reply won)"
  "el_neg_tick_reply_no_gen;fail;$el;-DTICK_PREEMPTIBLE -DBUG_TICK_REPLY_NO_GEN;safety;assertion violated \(wseq\[t\]==s\);endpoint_locks negative control BUG_TICK_REPLY_NO_GEN (TICK_PREEMPTIBLE): the re-check leaves out the wait generation: an old timeout ends the next wait"
  "el_neg_tick_no_recheck;fail;$el;-DBUG_TICK_NO_RECHECK;safety;assertion violated .*(sq\[w\]==t|res\[t\]==PENDING|state\[t\]==BLOCKED);endpoint_locks negative control BUG_TICK_NO_RECHECK: the tick, re-locked, ends an endpoint wait without re-checking it"
  "el_neg_waker_no_reread;fail;$el;-DMOVE -DBUG_WAKER_NO_REREAD;safety;assertion violated .*home\[;endpoint_locks negative control BUG_WAKER_NO_REREAD: a waker locks the home it read and does not read Thread::cpu again (a move of C1)"
  "el_neg_waker_no_reread_r;fail;$el;-DMOVE_R -DBUG_WAKER_NO_REREAD;safety;assertion violated .*home\[;endpoint_locks negative control BUG_WAKER_NO_REREAD with a move of R"
  "el_neg_tick_no_pin;fail;$el;-DDIE -DBUG_TICK_NO_PIN;safety;assertion violated .*freedR;endpoint_locks negative control BUG_TICK_NO_PIN: the tick does not pin R, which dies and is freed before the tick reads its home"
  "el_neg_kill_no_restart;fail;$el;-DKILL -DBUG_KILL_NO_RESTART;safety;assertion violated \(state\[1\]!=;endpoint_locks negative control BUG_KILL_NO_RESTART: the kill gives up when the wait moved from senders_ to R's callers queue"
  "el_neg_unlock_ep_before_block;fail;$el;-DBUG_UNLOCK_EP_BEFORE_BLOCK;safety;assertion violated .*rmsg!=0;endpoint_locks negative control BUG_UNLOCK_EP_BEFORE_BLOCK: R's recv drops EP[e] before it is Blocked (a lost wake-up)"
  "el_save_kill_die;pass;$el;-DSAVE -DKILL -DDIE;safety;;endpoint_locks SAVE: R (CPU0) may save a call in a Reply (two Replies), answered or dropped later from CPU0 under the caller's home S; C1 (CPU1) 2 timed calls, a kill of C1, R may die"
  "el_save_kill_move;pass;$el;-DSAVE -DKILL -DMOVE;safety;;endpoint_locks SAVE: a kill and a move of C1 to CPU0 (a saved wait moves with it; the replier's re-read)"
  "el_save_replier1;pass;$el;-DSAVE -DREPLIER_CPU=1 -DKILL -DMOVE;safety;;endpoint_locks SAVE: the Replier on CPU1, not R's CPU; a kill and a move of C1"
  "el_save_r1_kill_move;pass;$el;-DSAVE -DR_HOME=1 -DKILL -DMOVE;safety;;endpoint_locks SAVE: R and the Replier on CPU1, a kill and a move of C1 to CPU0 (ReplySave then takes S0 first)"
  "el_save_two_ep;pass;$el;-DSAVE -DTWO_EP -DDIE;safety;;endpoint_locks SAVE: C0 (CPU0, EP1) saved too: answers on the caller's own CPU, R may die"
  "el_save_r1_two_ep;pass;$el;-DSAVE -DR_HOME=1 -DTWO_EP -DDIE;safety;;endpoint_locks SAVE: R and the Replier on CPU1, C0's saved call answered across CPUs (S0), R may die"
  "el_save_r1_replier0;pass;$el;-DSAVE -DR_HOME=1 -DREPLIER_CPU=0 -DTWO_EP -DDIE;safety;;endpoint_locks SAVE: R on CPU1, the Replier on CPU0, both clients' calls saved, R may die"
  "el_save_move_r;pass;$el;-DSAVE -DMOVE_R -DKILL -DDIE;safety;;endpoint_locks SAVE: a move of R (saved waits stay with their callers), a kill of C1, R may die"
  "el_save_move_c0;pass;$el;-DSAVE -DMOVE_C0 -DTWO_EP -DNCALL=1 -DDIE;safety;;endpoint_locks SAVE: a move of C0 to CPU1 (S0 then S1 on CPU0) while its call may be saved, R may die"
  "el_save_tick_preemptible;pass;$el;-DSAVE -DTICK_PREEMPTIBLE -DKILL -DDIE;safety;;endpoint_locks SAVE, TICK_PREEMPTIBLE: the tick's CPU runs other code between its steps, kill, R may die"
  "el_save_untimed;pass;$el;-DSAVE -DUNTIMED -DKILL -DMOVE;safety;;endpoint_locks SAVE, UNTIMED: calls without timeouts: a saved wait ends only by its Reply or the kill (a lost answer would leave C1 Blocked)"
  "el_probes_save;reach;$el;-DPROBE_ALL -DSAVE -DR_HOME=1 -DKILL -DMOVE;probe;26 27 28 29 30 31 32 33 34 35 36 37;endpoint_locks reachability probes 26-37 (saved replies, README.md)"
  "el_neg_saved_no_caller_s;fail;$el;-DSAVE -DBUG_SAVED_NO_CALLER_S;safety;assertion violated \(+lk\[\(2\+home\[t\]\)\];endpoint_locks negative control BUG_SAVED_NO_CALLER_S: a saved reply answered under the server's home S, not the caller's"
  "el_neg_save_against_order;fail;$el;-DSAVE -DR_HOME=1 -DTWO_EP -DBUG_SAVE_AGAINST_ORDER;safety;assertion violated \(\(\(\(lk\[0\]==0\)|invalid end state;endpoint_locks negative control BUG_SAVE_AGAINST_ORDER: ReplySave on CPU1 takes S1 then C0's S0 while CPU0's tick holds S0 and wants S1 (deadlock)"
  "el_neg_saved_no_reread;fail;$el;-DSAVE -DMOVE -DBUG_SAVED_NO_REREAD;safety;assertion violated \(+lk\[\(2\+home\[t\]\)\];endpoint_locks negative control BUG_SAVED_NO_REREAD: the replier locks the caller's home it read and does not read it again (a move of C1)"
  "el_neg_saved_no_seq;fail;$el;-DSAVE -DBUG_SAVED_NO_SEQ;safety;assertion violated \((wseq\[t\]==s|rslot\[t\]==msg\[t\])\);endpoint_locks negative control BUG_SAVED_NO_SEQ: a Reply's check leaves out the token's call number: the Reply of C1's first call ends its second"
  "el_neg_saved_no_pin;fail;$el;-DSAVE -DBUG_SAVED_NO_PIN;safety;assertion violated +!\(freedC\[t\]\);endpoint_locks negative control BUG_SAVED_NO_PIN: the Reply holds no reference to its caller, which times out, ends and is freed before the answer reads its home"
  "el_neg_drop_no_fail;fail;$el;-DSAVE -DUNTIMED -DBUG_DROP_NO_FAIL;safety;assertion violated .*(wl\[t\]==8|cdone\[1\]);endpoint_locks negative control BUG_DROP_NO_FAIL (UNTIMED): a dropped Reply does not fail its caller (a lost wake-up)"
  "el_free;pass;$el;-DFREE -DR_HOME=1 -DKILL -DMOVE;safety;;endpoint_locks FREE: the close of EP0's last handle on CPU0 (HandleTable::remove, then Endpoint::free_object takes and lets go of EP0) while C1's fast path on CPU1 lets go of EP0 after its table lock; a kill and a move of C1"
  "el_probes_free;reach;$el;-DPROBE_ALL -DFREE -DR_HOME=1;probe;38 39;endpoint_locks reachability probes 38, 39 (free_object waits for the fast path holding EP0, then frees it)"
  "el_neg_free_without_lock;fail;$el;-DFREE -DR_HOME=1 -DBUG_FREE_WITHOUT_LOCK;safety;assertion violated .*ep_freed;endpoint_locks negative control BUG_FREE_WITHOUT_LOCK: free_object frees EP0 without taking its lock: the fast path lets go of a freed endpoint's lock"
)

split() { IFS=';' read -r name expect model defs mode pattern label <<<"$1"; }

run_one() { # run_one LINE -- verify one configuration in $work/<name>
    local name expect model defs mode pattern label d
    split "$1"
    d=$work/$name
    local opt=-O0                        # pan.c is large: -O2 compiles for longer than it saves
    local w=-w22                         # hash table: 4 M slots (the largest run stores 3.6 M)
    [ "$expect" = fail ] && w=-w18       # stops at the first error: a small table is cheaper
    rm -rf "$d"; mkdir -p "$d"; cp "$here/$model" "$d/"
    (
        cd "$d" || exit 1
        start=$EPOCHREALTIME
        # shellcheck disable=SC2086
        spin $defs -a "$model" >spin.log 2>&1 || { echo "spin -a failed" >>spin.log; exit 1; }
        case $mode in
            safety)  gcc "$opt" "${cc_flags[@]}" -DSAFETY -o pan pan.c >cc.log 2>&1 && ./pan "$w" -m"$depth" >pan.out 2>&1 ;;
            np)      gcc "$opt" "${cc_flags[@]}" -DNP -o pan pan.c >cc.log 2>&1 && ./pan "$w" -l -m"$depth" >pan.out 2>&1 ;;
            np-only) gcc "$opt" "${cc_flags[@]}" -DNP -o pan pan.c >cc.log 2>&1 && ./pan "$w" -l -A -E -m"$depth" >pan.out 2>&1 ;;
            probe)   gcc "$opt" "${cc_flags[@]}" -DSAFETY -o pan pan.c >cc.log 2>&1 && ./pan "$w" -c0 -m"$depth" >pan.out 2>&1 ;;
        esac
        awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}' >time.txt
    )
}

t0=$(date +%s)
running=0
for r in "${runs[@]}"; do
    run_one "$r" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs_max" ]; then wait -n; running=$((running - 1)); fi
done
wait

status=0
for r in "${runs[@]}"; do
    split "$r"
    d=$work/$name; out=$d/pan.out
    secs=$(cat "$d/time.txt" 2>/dev/null || echo '?')
    stats=""
    if [ -s "$out" ]; then
        stats=$(awk '/states, stored/ {s=$1} /depth reached/ {for(i=1;i<=NF;i++) if($i=="reached") {d=$(i+1); sub(",","",d)}}
                     END {printf "%s states stored, depth %s", s, d}' "$out")
    fi
    complete=1
    if [ ! -s "$out" ] || ! grep -q 'errors:' "$out" \
       || grep -qiE 'max search depth too small|out of memory|memory limit|pan: reached -DMEMLIM' "$out"; then
        complete=0
    fi
    if [ "$expect" = reach ]; then
        missing=""
        for n in $pattern; do
            grep -q "assertion violated ($n==100)" "$out" 2>/dev/null || missing="$missing $n"
        done
        if [ -s "$out" ] && [ -z "$missing" ]; then
            echo "spin: $label (must reach): PASS ($stats, ${secs}s)"
        else
            status=1
            echo "spin: $label (must reach): FAIL -- not reached:${missing:- (no output)}"
            cat "$d/spin.log" "$d/cc.log" 2>/dev/null | tail -20
        fi
    elif [ "$expect" = pass ]; then
        if [ "$complete" = 1 ] && grep -q 'errors: 0' "$out" && ! grep -q 'Search not completed' "$out"; then
            echo "spin: $label: PASS ($stats, ${secs}s)"
        else
            status=1
            echo "spin: $label: FAIL ($stats)"
            echo "---- $d: spin.log / cc.log / pan.out ----"
            cat "$d/spin.log" "$d/cc.log" 2>/dev/null | tail -20
            [ -s "$out" ] && cat "$out"
            if [ -f "$d/$model.trail" ]; then
                echo "---- counterexample, printf narrative (spin -t $defs) ----"
                # shellcheck disable=SC2086
                (cd "$d" && spin -t $defs "$model" 2>&1 | sed -n '/^spin: trail ends/q;p')
                echo "---- counterexample, full trail (spin -t -p $defs), also in $d/trail.txt ----"
                # shellcheck disable=SC2086
                (cd "$d" && spin -t -p $defs "$model" 2>&1 | tee trail.txt)
            fi
        fi
    else
        if [ -s "$out" ] && grep -qE 'errors: [1-9]' "$out" && grep -qE "$pattern" "$out"; then
            what=$(grep -m1 -E '^pan:1:|^pan: ' "$out" | sed 's/ (at depth.*//')
            echo "spin: $label (must fail): PASS (spin found: ${what:-error})"
            # shellcheck disable=SC2086
            (cd "$d" && spin -t $defs "$model" >narrative.txt 2>&1; spin -t -p $defs "$model" >trail.txt 2>&1)
            if [ "${VERBOSE:-0}" = 1 ]; then sed -n '/^spin: trail ends/q;p' "$d/narrative.txt"; fi
        else
            status=1
            echo "spin: $label (must fail): FAIL -- spin found no error matching /$pattern/;"
            echo "      the model cannot detect this bug. Output:"
            cat "$d/spin.log" "$d/cc.log" 2>/dev/null | tail -20
            [ -s "$out" ] && cat "$out"
        fi
    fi
done

echo "spin: total $(($(date +%s) - t0))s, work dir $work"
if [ "$status" = 0 ] && [ "$keep_work" = 0 ]; then rm -rf "$work"; fi
exit "$status"
