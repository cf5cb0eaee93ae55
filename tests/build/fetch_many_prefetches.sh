#!/bin/sh
# Checks that Session::fetch_many, as compiled into LIBRARY, still issues
# its prefetches. GCC once deleted them: it judged the helper that only
# prefetched free of side effects and dropped the calls to it, and the
# batch fetch of random refs ran at the speed of single fetches.
# Usage: fetch_many_prefetches.sh OBJDUMP NM LIBRARY
set -eu
objdump=$1 nm=$2 lib=$3
sym=$("$nm" --defined-only "$lib" 2>/dev/null |
  awk '$2 ~ /^[Tt]$/ && $3 ~ /^_ZN9sealstore6detail7Session10fetch_many/ && $3 !~ /cold/ { print $3; exit }')
if [ -z "$sym" ]; then
  echo "no Session::fetch_many in $lib" >&2
  exit 1
fi
n=$("$objdump" -d --no-show-raw-insn --disassemble="$sym" "$lib" | grep -c 'prefetch' || true)
echo "Session::fetch_many ($sym): $n prefetch instructions"
if [ "$n" -lt 3 ]; then
  echo "expected at least 3 (the entry, this process's pin count, the pin mask): the prefetches were compiled out" >&2
  exit 1
fi
