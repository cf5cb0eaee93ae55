#!/usr/bin/env bash
# A host dies: its serving rank is SIGKILLed while the driver waits for a
# task running there. What MPI does then is MPI's: Open MPI's mpirun ends
# the whole job (every other rank gets SIGTERM, and sealstore's handlers
# stop their workers and remove their segments). This checks that the job
# ends, within a minute, saying which rank died; that no worker is left;
# and that only the killed host's segment is left, which memstat --gc
# removes.
# Usage: host_killed.sh MPIEXEC "FLAGS" TEST_BINARY MEMSTAT
set -uo pipefail
mpiexec=$1 flags=$2 binary=$3 memstat=$4
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
# shellcheck disable=SC2086  # FLAGS is a list of words
SEALSTORE_CLUSTER_KILL_TEST=1 timeout 120 "$mpiexec" -n 2 $flags -x SEALSTORE_CLUSTER_KILL_TEST \
  "$binary" --gtest_filter='*KilledHostEndsTheJob*' >"$out" 2>&1
rc=$?
took=$(( $(date +%s) - start ))
cat "$out"
fail() { echo "host_killed: FAILED: $*"; exit 1; }
[ "$rc" -ne 124 ] || fail "the job hung (killed by timeout after 120 s)"
[ "$rc" -ne 0 ] || fail "the job exited 0 although a host died"
[ "$took" -le 60 ] || fail "the job took $took s to end"
grep -q "killing host 1's serving process" "$out" || fail "the test did not reach the kill"
grep -Eq "rank 1 .*(signal 9|Killed)|exited on signal 9" "$out" || fail "MPI did not say which rank died"
read -r seg0 seg1 < <(sed -n 's/^segments: \(.*\)$/\1/p' "$out")
[ -n "$seg0" ] && [ -n "$seg1" ] || fail "the test did not name its segments"
sleep 1
if pgrep -f -- "--sealstore-worker ($seg0|$seg1) " >/dev/null; then
  fail "workers of the job are left: $(pgrep -af -- "--sealstore-worker ($seg0|$seg1) ")"
fi
[ ! -e "/dev/shm/sealstore.$seg0" ] || fail "the driver's host left its segment $seg0"
[ -e "/dev/shm/sealstore.$seg1" ] || fail "the killed host's segment $seg1 is gone: expected it left behind"
"$memstat" --gc --segment "$seg1" --yes --min-age 0 >/dev/null || fail "memstat --gc kept $seg1"
[ ! -e "/dev/shm/sealstore.$seg1" ] || fail "memstat --gc did not remove $seg1"
echo "host_killed: the job ended in $took s (exit $rc); the killed host's segment was left and memstat --gc removed it"
