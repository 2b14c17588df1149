#!/usr/bin/env bash
# run_spin.sh [workdir] -- exhaustive SPIN model check of block_wake_donate.pml
#
# Runs (at most $SPIN_JOBS=2 at a time), each in its own directory under workdir:
#   * properties that must HOLD (errors: 0, complete search, no depth truncation)
#   * negative controls that must FAIL (spin must find the planted bug; otherwise the
#     model could not detect it and proves nothing)
# Exit 0 only if every run behaves as expected.  VERBOSE=1 also prints the
# counterexample narrative of each negative control.  No -DBITSTATE: searches are exhaustive.
set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model=block_wake_donate.pml
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

# name ; expect (pass|fail) ; spin -D flags ; mode (safety|np|np-only) ; fail regex ; label
runs=(
  "safety_2w2p;pass;;safety;;lost-wakeup/deadlock/protocol asserts (safety, 2 waiters + 2 wakers)"
  "safety_3w1p;pass;-DNW=3 -DNP=1 -DIPW=2;safety;;lost-wakeup/deadlock/protocol asserts (safety, 3 waiters + 1 waker)"
  "np_2w2p;pass;;np;;termination: no livelock / non-progress cycle (2 waiters + 2 wakers)"
  "neg_no_lock;fail;-DBUGGY_NO_LOCK;safety;assertion violated|invalid end state;negative control BUGGY_NO_LOCK: check-then-sleep not under Endpoint::lock_"
  "neg_no_pending;fail;-DBUGGY_NO_PENDING;safety;assertion violated|invalid end state;negative control BUGGY_NO_PENDING: block() ignores wake_pending"
  "neg_running_only;fail;-DSPEC_WAKE_RUNNING_ONLY;safety;assertion violated|invalid end state;negative control SPEC_WAKE_RUNNING_ONLY: wake_pending only if Running (armed+preempted missed)"
  "neg_sleep_holding_ep;fail;-DBUGGY_SLEEP_HOLDING_EP;np-only;non-progress cycle;negative control BUGGY_SLEEP_HOLDING_EP: sleeps holding Endpoint::lock_ (livelock)"
)

split() { IFS=';' read -r name expect defs mode pattern label <<<"$1"; }

run_one() { # run_one LINE -- verify one configuration in $work/<name>
    local name expect defs mode pattern label d
    split "$1"
    d=$work/$name
    local opt=-O2                        # long searches: optimise pan
    [ "$expect" = fail ] && opt=-O0      # negative controls stop at the first error: compile fast
    rm -rf "$d"; mkdir -p "$d"; cp "$here/$model" "$d/"
    (
        cd "$d" || exit 1
        start=$EPOCHREALTIME
        # shellcheck disable=SC2086
        spin $defs -a "$model" >spin.log 2>&1 || { echo "spin -a failed" >>spin.log; exit 1; }
        case $mode in
            safety)  gcc "$opt" "${cc_flags[@]}" -DSAFETY -o pan pan.c >cc.log 2>&1 && ./pan -m"$depth" >pan.out 2>&1 ;;
            np)      gcc "$opt" "${cc_flags[@]}" -DNP -o pan pan.c >cc.log 2>&1 && ./pan -l -m"$depth" >pan.out 2>&1 ;;
            np-only) gcc "$opt" "${cc_flags[@]}" -DNP -o pan pan.c >cc.log 2>&1 && ./pan -l -A -E -m"$depth" >pan.out 2>&1 ;;
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
    if [ "$expect" = pass ]; then
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
