/*
 * bench_alloc.h -- a counting pose_allocator for pose_bench.
 *
 * Every allocation libpose makes goes through the installed pose_allocator, so counting bytes
 * there measures the library's real memory use (weights and per-call scratch) without relying
 * on its internals or on the process RSS, which the benchmark's own buffers would blur.
 */
#ifndef BENCH_ALLOC_H
#define BENCH_ALLOC_H

#include <stddef.h>

#include <pose.h>

/** Installs the counting allocator with pose_set_allocator. Call before creating any handle. */
pose_status bench_alloc_install(void);

/** Bytes libpose holds right now (requested sizes, not counting the allocator's own header). */
size_t bench_alloc_current(void);

/** Highest bench_alloc_current() since the last bench_alloc_reset_peak(). */
size_t bench_alloc_peak(void);

/** Starts a new peak window at the current level. */
void bench_alloc_reset_peak(void);

#endif /* BENCH_ALLOC_H */
