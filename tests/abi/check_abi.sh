#!/usr/bin/env bash
# The ABI gate: compares the built libpose.so with the committed baseline (libabigail).
#
#   check_abi.sh BASELINE.abi LIBRARY HEADER_DIR
#
# Fails on an incompatible change (abidiff exit bit 8: removed or changed functions, changed
# types) unless the SONAME differs from the baseline's, i.e. POSE_ABI_VERSION was bumped.
# Compatible additions (exit bit 4 alone) pass and are printed so they can be reviewed.
# Exits 77 (ctest: skipped) when abidiff is not installed (Debian package abigail-tools).
# Regenerate the baseline after an intended, released change with:
#   abidw --headers-dir include --no-corpus-path build/libpose.so > tests/abi/libpose.abi
set -uo pipefail
baseline=$1 library=$2 headers=$3
if ! command -v abidiff >/dev/null 2>&1; then
  echo "abidiff not found (apt-get install abigail-tools): ABI check skipped"
  exit 77
fi
old_soname=$(sed -n 's/.*soname=.\([^"'\'']*\).*/\1/p' "$baseline" | head -n 1)
new_soname=$(readelf -d "$library" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
abidiff --headers-dir2 "$headers" "$baseline" "$library"
rc=$?
if (( rc & 1 || rc & 2 )); then
  echo "FAIL: abidiff could not compare (exit $rc)"
  exit 1
fi
if (( rc & 8 )); then
  if [[ $old_soname != "$new_soname" ]]; then
    echo "incompatible ABI change with a new SONAME ($old_soname -> $new_soname): allowed"
    exit 0
  fi
  echo "FAIL: incompatible ABI change without a SONAME bump (still $new_soname):"
  echo "      bump POSE_ABI_VERSION in include/pose.h, or keep the old ABI"
  exit 1
fi
(( rc & 4 )) && echo "compatible ABI additions (see above); baseline $old_soname still holds"
echo "ABI compatible with $baseline"
exit 0
