#!/usr/bin/env bash
# Installs the libpose build tree into a temporary prefix and builds consumer.c against that
# installation the ways a downstream user would:
#   1. C (-std=c99 -Wpedantic -Werror), shared library, flags from `pkg-config --cflags --libs pose`
#   2. the same file compiled as C++ (g++ -x c++), which needs pose.h's extern "C" to link
#   3. C, static libpose.a, dependencies from `pkg-config --static --libs pose`
#   4. a CMake project using find_package(pose) with pose::pose and pose::pose_static
# and runs each program. Registered with ctest in tests/CMakeLists.txt; by hand:
#   bash tests/consumer/run.sh --build-dir=build
# Nothing is installed outside the temporary directory, which is removed at exit (set
# POSE_KEEP_TMP=1 to keep it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build_dir=""
libdir=lib
includedir=include
cmake_cmd=cmake
cc=${CC:-cc}
generator=""
sanitize=""
config=""
for arg in "$@"; do
  case $arg in
    --build-dir=*) build_dir=${arg#*=} ;;
    --libdir=*) libdir=${arg#*=} ;;
    --includedir=*) includedir=${arg#*=} ;;
    --cmake=*) cmake_cmd=${arg#*=} ;;
    --cc=*) cc=${arg#*=} ;;
    --generator=*) generator=${arg#*=} ;;
    --sanitize=*) sanitize=${arg#*=} ;;
    --config=*) config=${arg#*=} ;;
    *) echo "run.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
if [[ -z $build_dir || ! -f $build_dir/CMakeCache.txt ]]; then
  echo "run.sh: --build-dir=DIR must name a configured and built libpose build tree" >&2
  exit 2
fi
# An absolute install directory would send files outside the temporary prefix.
for d in "$libdir" "$includedir"; do
  if [[ $d == /* ]]; then
    echo "run.sh: install directory '$d' is absolute; refusing to install outside a temp prefix" >&2
    exit 1
  fi
done

cxx=${CXX:-}
if [[ -z $cxx ]]; then
  for c in g++ c++ clang++; do
    if command -v "$c" >/dev/null; then cxx=$c; break; fi
  done
fi
if [[ -z $cxx ]]; then
  echo "FAIL: no C++ compiler found (install g++) to check pose.h compiles as C++" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pose-consumer.XXXXXX")
if [[ ${POSE_KEEP_TMP:-0} == 1 ]]; then
  echo "keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi
prefix=$tmp/prefix
libpath=$prefix/$libdir

step() { printf '\n--- %s\n' "$*"; }
run() {
  printf '+ %s\n' "$*"
  "$@"
}
# Fails unless `ldd PROGRAM` resolves libpose.so to the temporary prefix (not the build tree or
# a system copy).
check_loads_from_prefix() {
  local line
  line=$(LD_LIBRARY_PATH=${2:-} ldd "$1" | grep 'libpose\.so' || true)
  if [[ $line != *"$libpath/"* ]]; then
    echo "FAIL: $1 does not load libpose from $libpath: '${line:-not linked}'" >&2
    exit 1
  fi
}
check_not_linked() {
  if readelf -d "$1" | grep -q 'NEEDED.*libpose'; then
    echo "FAIL: $1 should contain libpose statically but needs the shared library" >&2
    exit 1
  fi
}

warn=(-Wall -Wextra -Wpedantic -Werror)
san=()
if [[ -n $sanitize ]]; then
  san=("-fsanitize=$sanitize" -fno-sanitize-recover=all -fno-omit-frame-pointer)
fi

step "install the build tree into $prefix"
install_args=(--install "$build_dir" --prefix "$prefix")
[[ -n $config ]] && install_args+=(--config "$config")
run "$cmake_cmd" "${install_args[@]}" >"$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }
for f in include/pose.h "$libdir/libpose.so" "$libdir/libpose.a" "$libdir/pkgconfig/pose.pc" \
         "$libdir/cmake/pose/poseConfig.cmake" "$libdir/cmake/pose/poseConfigVersion.cmake"; do
  if [[ ! -e $prefix/$f ]]; then
    echo "FAIL: $f was not installed" >&2
    exit 1
  fi
done
echo "installed: $(cd "$prefix" && find . \( -type f -o -type l \) | LC_ALL=C sort | tr '\n' ' ')"

step "pkg-config"
export PKG_CONFIG_PATH=$libpath/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pcfiledir=$(pkg-config --variable=pcfiledir pose)
if [[ $pcfiledir != "$libpath/pkgconfig" ]]; then
  echo "FAIL: pkg-config found pose.pc in '$pcfiledir', not in $libpath/pkgconfig" >&2
  exit 1
fi
header_version=$(sed -n 's/^#define POSE_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' \
                   "$prefix/include/pose.h" | paste -sd.)
pc_version=$(pkg-config --modversion pose)
if [[ $pc_version != "$header_version" ]]; then
  echo "FAIL: pose.pc version $pc_version, pose.h version $header_version" >&2
  exit 1
fi
read -r -a pc_flags <<<"$(pkg-config --cflags --libs pose)"
read -r -a pc_cflags <<<"$(pkg-config --cflags pose)"
read -r -a pc_static_libs <<<"$(pkg-config --static --libs pose)"
echo "pkg-config --cflags --libs pose:   ${pc_flags[*]}"
echo "pkg-config --static --libs pose:   ${pc_static_libs[*]}"
# The paths must point into the prefix the package was installed to.
if [[ " ${pc_flags[*]} " != *" -I$prefix/"* && " ${pc_flags[*]} " != *" -I$libpath/"* ]]; then
  echo "FAIL: pkg-config --cflags does not point into $prefix" >&2
  exit 1
fi

step "C, shared library, pkg-config"
run "$cc" -std=c99 "${warn[@]}" "${san[@]}" "$here/consumer.c" -o "$tmp/consumer_c" \
  "${pc_flags[@]}" -lm
check_loads_from_prefix "$tmp/consumer_c" "$libpath"
LD_LIBRARY_PATH=$libpath run "$tmp/consumer_c"

step "C++ ($cxx -x c++), shared library, pkg-config"
run "$cxx" -x c++ -std=c++11 "${warn[@]}" "${san[@]}" "$here/consumer.c" -x none \
  -o "$tmp/consumer_cxx" "${pc_flags[@]}" -lm
check_loads_from_prefix "$tmp/consumer_cxx" "$libpath"
LD_LIBRARY_PATH=$libpath run "$tmp/consumer_cxx"

step "C, static library, pkg-config --static"
# -lpose would pick libpose.so when both are installed; -l:libpose.a asks for the archive. The
# rest of the line (OpenBLAS, Jansson, libm, pthread) must come from pose.pc.
static_libs=()
for w in "${pc_static_libs[@]}"; do
  if [[ $w == -lpose ]]; then static_libs+=(-l:libpose.a); else static_libs+=("$w"); fi
done
run "$cc" -std=c99 "${warn[@]}" "${san[@]}" "$here/consumer.c" -o "$tmp/consumer_static" \
  "${pc_cflags[@]}" "${static_libs[@]}"
check_not_linked "$tmp/consumer_static"
run "$tmp/consumer_static"

step "CMake find_package(pose): pose::pose and pose::pose_static"
cmake_args=(-S "$here" -B "$tmp/cmake-build" "-DCMAKE_PREFIX_PATH=$prefix"
            "-DCMAKE_C_COMPILER=$cc" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_C_FLAGS=${warn[*]}")
[[ -n $generator ]] && cmake_args+=(-G "$generator")
if [[ ${#san[@]} -gt 0 ]]; then
  cmake_args+=("-DCMAKE_C_FLAGS=${warn[*]} ${san[*]}" "-DCMAKE_EXE_LINKER_FLAGS=${san[*]}")
fi
# PKG_CONFIG_PATH is cleared so that only CMAKE_PREFIX_PATH leads CMake to libpose.
(
  unset PKG_CONFIG_PATH
  run "$cmake_cmd" "${cmake_args[@]}" >"$tmp/cmake-configure.log" ||
    { cat "$tmp/cmake-configure.log"; exit 1; }
  grep -i 'pose' "$tmp/cmake-configure.log" || true
  run "$cmake_cmd" --build "$tmp/cmake-build"
)
check_loads_from_prefix "$tmp/cmake-build/consumer"
run "$tmp/cmake-build/consumer"
check_not_linked "$tmp/cmake-build/consumer_static"
run "$tmp/cmake-build/consumer_static"

printf '\nok: installed libpose works from C, C++, pkg-config (shared and static) and CMake\n'
