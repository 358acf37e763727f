#!/usr/bin/env bash
# shellcheck disable=SC2001  # sed prefixes each line of a list; clearer than ${var//}
# The shared library's ABI surface is exactly what include/pose.h declares.
#
#   test_symbols.sh HEADER LIBRARY [NM] [READELF]
#
# 1. Every function declared with POSE_API in HEADER is exported by LIBRARY, and LIBRARY exports
#    nothing else (hidden visibility works; no internal helper leaks into the ABI). The
#    difference is printed when the sets are not equal.
# 2. LIBRARY's SONAME is libpose.so.<POSE_ABI_VERSION>, with POSE_ABI_VERSION read from HEADER.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 HEADER LIBRARY [NM] [READELF]" >&2
  exit 2
fi
header=$1
library=$2
nm_tool=${3:-nm}
readelf_tool=${4:-readelf}
[[ -n $nm_tool ]] || nm_tool="nm"
[[ -n $readelf_tool ]] || readelf_tool="readelf"

for f in "$header" "$library"; do
  if [[ ! -f $f ]]; then
    echo "FAIL: $f does not exist" >&2
    exit 1
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- declared: the identifier before '(' in each POSE_API declaration ---------------------
# Comments and preprocessor lines (with their continuations) are removed first, so the
# `#define POSE_API ...` lines and prose that mentions POSE_API are not taken for declarations;
# declarations that span several lines are joined.
perl -0777 -ne '
  s{/\*.*?\*/}{ }gs;          # block comments
  s{//[^\n]*}{}g;             # line comments
  s{\\\n}{ }g;                # preprocessor continuations
  s{^[ \t]*#[^\n]*}{}mg;      # preprocessor lines
  while (/\bPOSE_API\b([^;{]*?)\b([A-Za-z_]\w*)\s*\(/g) { print "$2\n"; }
' "$header" | LC_ALL=C sort -u >"$tmp/declared"

if [[ ! -s $tmp/declared ]]; then
  echo "FAIL: found no POSE_API declarations in $header (is the extraction broken?)" >&2
  exit 1
fi

# ---- exported: defined dynamic symbols ---------------------------------------------------
# A symbol version suffix (name@@VERSION) is dropped. Symbols some linkers define in every
# shared object (_init, _fini, _edata, _end, __bss_start) are not part of the API.
"$nm_tool" -D --defined-only "$library" >"$tmp/nm.out"
awk 'NF >= 3 { print $3 } NF == 2 { print $2 }' "$tmp/nm.out" |
  sed 's/@.*//' |
  grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' |
  LC_ALL=C sort -u >"$tmp/exported" || true

status=0
missing=$(LC_ALL=C comm -23 "$tmp/declared" "$tmp/exported")
extra=$(LC_ALL=C comm -13 "$tmp/declared" "$tmp/exported")
if [[ -n $missing ]]; then
  echo "FAIL: declared with POSE_API in $(basename "$header") but not exported by $(basename "$library"):"
  sed 's/^/  - /' <<<"$missing"
  status=1
fi
if [[ -n $extra ]]; then
  echo "FAIL: exported by $(basename "$library") but not declared with POSE_API in $(basename "$header"):"
  sed 's/^/  + /' <<<"$extra"
  status=1
fi

# Every export must be a function (the header declares no data objects).
not_text=$(awk 'NF >= 3 && $2 != "T" && $2 != "i" { print $3 " (nm type " $2 ")" }' "$tmp/nm.out" |
           sed 's/@[^ ]*//' | grep -Ev '^(_init|_fini|_edata|_end|__bss_start) ' || true)
if [[ -n $not_text ]]; then
  echo "FAIL: exported symbols that are not functions in .text:"
  sed 's/^/  * /' <<<"$not_text"
  status=1
fi

# ---- SONAME -----------------------------------------------------------------------------
abi=$(sed -n 's/^#define POSE_ABI_VERSION \([0-9][0-9]*\).*/\1/p' "$header")
if [[ -z $abi ]]; then
  echo "FAIL: no '#define POSE_ABI_VERSION <n>' in $header" >&2
  exit 1
fi
expected_soname="libpose.so.$abi"
soname=$("$readelf_tool" -d "$library" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [[ $soname != "$expected_soname" ]]; then
  echo "FAIL: SONAME is '${soname:-<none>}', expected '$expected_soname' (POSE_ABI_VERSION $abi)"
  status=1
fi

if [[ $status -eq 0 ]]; then
  echo "ok: $(wc -l <"$tmp/declared") POSE_API functions declared and exported, nothing else;" \
       "SONAME $soname"
fi
exit $status
