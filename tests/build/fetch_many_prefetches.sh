#!/bin/sh
# Checks that Session::fetch_many, as compiled into LIBRARY, still issues
# its prefetches. GCC 12 once compiled the helper that issued them into
# nothing, and a batch fetch of random refs ran at the speed of single
# fetches. Counts over every piece the compiler may have made of the
# function (its .cold, .part or .isra copies).
# Usage: fetch_many_prefetches.sh OBJDUMP NM LIBRARY
set -eu
objdump=$1 nm=$2 lib=$3
syms=$("$nm" --defined-only "$lib" | awk '$2 ~ /^[Tt]$/ && $3 ~ /^_ZN9sealstore6detail7Session10fetch_many/ { print $3 }')
if [ -z "$syms" ]; then
  echo "no Session::fetch_many in $lib" >&2
  exit 1
fi
total=0
for sym in $syms; do
  out=$("$objdump" -d --no-show-raw-insn --disassemble="$sym" "$lib")
  case $out in
    *"<$sym>:"*) ;;
    *) echo "$objdump did not disassemble $sym (it needs --disassemble=SYMBOL, binutils 2.32 or later)" >&2; exit 1 ;;
  esac
  n=$(printf '%s\n' "$out" | grep -c 'prefetch' || true)
  echo "$sym: $n prefetch instructions"
  total=$((total + n))
done
if [ "$total" -lt 3 ]; then
  echo "expected at least 3 (the entry, this process's pin count, the pin mask): the prefetches were compiled out" >&2
  exit 1
fi
