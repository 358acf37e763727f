/*
 * testutil.h -- comparison, random-fill and temporary-file helpers shared by libpose's cmocka
 * tests. Failures go through cmocka (the running test fails with a message naming the first bad
 * element); outside a cmocka test runner, cmocka exits the process instead.
 */
#ifndef POSE_TEST_TESTUTIL_H
#define POSE_TEST_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "pose.h"

#if defined(__GNUC__)
#  define TEST_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#  define TEST_PRINTF(fmt, args)
#endif

/** DESIGN.md's tolerance against PyTorch float32 references (torch.testing.assert_close's
 *  float32 defaults): |got - ref| <= TEST_ATOL + TEST_RTOL * |ref| per element. */
#define TEST_ATOL 1e-5
#define TEST_RTOL 1.3e-6

/** Prints the message (printf format) through cmocka and fails the running test. Never returns
 *  (cmocka longjmps out of the test; outside a test it exits). */
_Noreturn void test_failf(const char *fmt, ...) TEST_PRINTF(1, 2);

/** Checks |got[i] - ref[i]| <= TEST_ATOL + TEST_RTOL * |ref[i]| for every i < n. Fails the test
 *  with `what`, the first bad index, both values, the error and the bound. A NaN or Inf in got
 *  where ref is finite always fails; a NaN in ref needs a NaN in got, an infinite ref the same
 *  infinity (torch.testing.assert_close semantics with equal_nan=True). */
void assert_close_f32(const float *got, const float *ref, size_t n, const char *what);

/** As assert_close_f32 with explicit tolerances. */
void assert_close_f32_tol(const float *got, const float *ref, size_t n, double atol, double rtol,
                          const char *what);

/** As assert_close_f32_tol against a float64 reference (e.g. from ref64.h); the comparison is
 *  done in double. */
void assert_close_f64ref(const float *got, const double *ref, size_t n, double atol, double rtol,
                         const char *what);

/** Largest |got[i] - ref[i]| (for reports; NaN if any pair differs in NaN-ness). */
double max_abs_diff_f32(const float *got, const float *ref, size_t n);
double max_abs_diff_f64ref(const float *got, const double *ref, size_t n);

/** Fills x[0..n) with values uniform in [lo, hi) from a deterministic generator seeded by seed
 *  (splitmix64): the same seed gives the same values on every platform. */
void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

/** As fill_uniform for doubles. */
void fill_uniform_f64(double *x, size_t n, uint64_t seed, double lo, double hi);

/** Widens floats to doubles (y may not alias x). */
void to_f64(const float *x, size_t n, double *y);

/** Allocates n elements and fails the test on failure (zeroed). Free with free(). */
float *test_alloc_f32(size_t n);
double *test_alloc_f64(size_t n);

/** Path of `name` inside a private temporary directory made (mkdtemp, under $TMPDIR or /tmp)
 *  on first use and removed with its contents when the process exits. The string is malloc'd;
 *  free it with free(). Fails the test if the directory cannot be made. Not thread-safe. */
char *test_tmp_path(const char *name);

/** Writes size bytes to path (fails the test on error); for feeding crafted files to loaders. */
void test_write_file(const char *path, const void *data, size_t size);

/** Counts the allocations libpose makes through it and fails the fail_at-th one (1-based; 0
 *  never fails), for allocation-failure tests: install test_counting_allocator(&c) with
 *  pose_set_allocator, run, restore with pose_set_allocator(NULL), then live must be 0. */
typedef struct test_counting {
  size_t live, total, fail_at;
} test_counting;

/** The pose_allocator that counts into c (aligned memory from posix_memalign). */
pose_allocator test_counting_allocator(test_counting *c);

/** Creates the module of cfg, runs a padded batch of three sequences of lengths n, n-37 (or n)
 *  and 1 on n positions, and fails the test unless each sequence equals running it alone
 *  (bitwise), padded rows are zero, and the batch gives the same bits on 1 and 3 threads.
 *  Inputs are drawn from seed. Restores the thread count it found. */
void assert_padded_and_threads_bitwise(const pose_attention_config *cfg, size_t n, uint64_t seed);

#endif /* POSE_TEST_TESTUTIL_H */
