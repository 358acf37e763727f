/*
 * testutil.c -- see testutil.h.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h> /* before cmocka.h, which needs jmp_buf, va_list, size_t */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- failing --------------------------------------------------------------------------------- */

_Noreturn void test_failf(const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fail_msg("%s", msg); /* the macro, not print_error/cm_print_error: renamed across versions */
  abort(); /* fail_msg longjmps out of the test or exits; this keeps the compiler's view honest */
}

/* ---- comparisons ----------------------------------------------------------------------------- */

/* Returns 1 if got is acceptable for ref under atol/rtol (assert_close semantics). */
static int close_enough(double got, double ref, double atol, double rtol) {
  if (isnan(ref)) return isnan(got);
  if (isinf(ref)) return got == ref;
  if (!isfinite(got)) return 0;
  return fabs(got - ref) <= atol + rtol * fabs(ref);
}

static void check_pair(double got, double ref, size_t i, size_t n, double atol, double rtol,
                       const char *what, double worst, size_t bad) {
  if (close_enough(got, ref, atol, rtol)) return;
  test_failf(
      "%s: element %zu of %zu: got %.9g, expected %.9g (|diff| %.3g > %.3g = %g + %g*|ref|)"
      "; %zu element(s) out of tolerance, worst |diff| %.3g",
      what ? what : "values", i, n, got, ref, fabs(got - ref), atol + rtol * fabs(ref), atol, rtol,
      bad, worst);
}

/* Counts the failures and the worst error first so the message says how bad things are, then
 * reports the first bad element. */
#define COMPARE_BODY(GOT, REF)                                                                  \
  do {                                                                                          \
    size_t bad = 0, first = n;                                                                  \
    double worst = 0.0;                                                                         \
    for (size_t i = 0; i < n; i++) {                                                            \
      double g = (double)(GOT)[i], r = (double)(REF)[i];                                        \
      if (!close_enough(g, r, atol, rtol)) {                                                    \
        if (first == n) first = i;                                                              \
        bad++;                                                                                  \
        double d = fabs(g - r);                                                                 \
        if (!(d <= worst)) worst = d; /* NaN sticks */                                          \
      }                                                                                         \
    }                                                                                           \
    if (bad) {                                                                                  \
      check_pair((double)(GOT)[first], (double)(REF)[first], first, n, atol, rtol, what, worst, \
                 bad);                                                                          \
    }                                                                                           \
  } while (0)

void assert_close_f32_tol(const float *got, const float *ref, size_t n, double atol, double rtol,
                          const char *what) {
  if (n > 0 && (got == NULL || ref == NULL)) test_failf("%s: NULL buffer", what ? what : "values");
  COMPARE_BODY(got, ref);
}

void assert_close_f32(const float *got, const float *ref, size_t n, const char *what) {
  assert_close_f32_tol(got, ref, n, TEST_ATOL, TEST_RTOL, what);
}

void assert_close_f64ref(const float *got, const double *ref, size_t n, double atol, double rtol,
                         const char *what) {
  if (n > 0 && (got == NULL || ref == NULL)) test_failf("%s: NULL buffer", what ? what : "values");
  COMPARE_BODY(got, ref);
}

double max_abs_diff_f32(const float *got, const float *ref, size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)ref[i]);
    if (isnan(got[i]) && isnan(ref[i])) continue;
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

double max_abs_diff_f64ref(const float *got, const double *ref, size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]);
    if (isnan(got[i]) && isnan(ref[i])) continue;
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

/* ---- random ---------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* 53 random bits to [0, 1): exact in double on every platform. */
static double unit_double(uint64_t *state) { return (double)(splitmix64(state) >> 11) * 0x1.0p-53; }

void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) {
    float v = (float)((double)lo + ((double)hi - (double)lo) * unit_double(&s));
    x[i] = v < hi ? v : lo; /* rounding to float may reach hi; keep the interval half-open */
  }
}

void fill_uniform_f64(double *x, size_t n, uint64_t seed, double lo, double hi) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * unit_double(&s);
}

void to_f64(const float *x, size_t n, double *y) {
  for (size_t i = 0; i < n; i++) y[i] = (double)x[i];
}

float *test_alloc_f32(size_t n) {
  float *p = calloc(n ? n : 1, sizeof *p);
  if (p == NULL) test_failf("out of memory allocating %zu floats", n);
  return p;
}

double *test_alloc_f64(size_t n) {
  double *p = calloc(n ? n : 1, sizeof *p);
  if (p == NULL) test_failf("out of memory allocating %zu doubles", n);
  return p;
}

/* ---- temporary files ------------------------------------------------------------------------- */

static char *tmp_dir; /* made once per process, removed at exit */

static void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d != NULL) {
      struct dirent *e;
      while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *child = malloc(len);
        if (child == NULL) continue;
        snprintf(child, len, "%s/%s", path, e->d_name);
        remove_tree(child);
        free(child);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

static void cleanup_tmp_dir(void) {
  if (tmp_dir == NULL) return;
  remove_tree(tmp_dir);
  free(tmp_dir);
  tmp_dir = NULL;
}

char *test_tmp_path(const char *name) {
  if (tmp_dir == NULL) {
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0') base = "/tmp";
    size_t len = strlen(base) + sizeof "/pose_test_XXXXXX";
    char *templ = malloc(len);
    if (templ == NULL) test_failf("out of memory");
    snprintf(templ, len, "%s/pose_test_XXXXXX", base);
    if (mkdtemp(templ) == NULL) {
      int e = errno;
      free(templ);
      test_failf("mkdtemp in %s: %s", base, strerror(e));
    }
    tmp_dir = templ;
    atexit(cleanup_tmp_dir);
  }
  size_t len = strlen(tmp_dir) + strlen(name) + 2;
  char *path = malloc(len);
  if (path == NULL) test_failf("out of memory");
  snprintf(path, len, "%s/%s", tmp_dir, name);
  return path;
}

void test_write_file(const char *path, const void *data, size_t size) {
  FILE *fp = fopen(path, "wb");
  if (fp == NULL) test_failf("cannot create %s: %s", path, strerror(errno));
  size_t put = size ? fwrite(data, 1, size, fp) : 0;
  int bad = put != size;
  if (fclose(fp) != 0) bad = 1;
  if (bad) test_failf("cannot write %zu bytes to %s", size, path);
}

static void *counting_alloc(size_t size, size_t alignment, void *user) {
  test_counting *c = user;
  if (++c->total == c->fail_at) return NULL;
  void *p = NULL;
  if (posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *) : alignment, size) != 0) {
    return NULL;
  }
  c->live++;
  return p;
}

static void counting_free(void *p, void *user) {
  ((test_counting *)user)->live--;
  free(p);
}

pose_allocator test_counting_allocator(test_counting *c) {
  return (pose_allocator){counting_alloc, counting_free, c};
}

void assert_padded_and_threads_bitwise(const pose_attention_config *cfg, size_t n, uint64_t seed) {
  const int before = pose_get_num_threads();
  pose_attention_module *a = NULL;
  assert_int_equal(pose_attention_create(cfg, &a), POSE_OK);
  const size_t d = cfg->dim, cnt = 3 * n * d;
  const size_t lengths[3] = {n, n > 40 ? n - 37 : n, 1};
  float *x = test_alloc_f32(cnt), *out1 = test_alloc_f32(cnt), *out3 = test_alloc_f32(cnt);
  float *alone = test_alloc_f32(n * d);
  fill_uniform(x, cnt, seed, -1, 1);
  assert_int_equal(pose_set_num_threads(1), POSE_OK);
  assert_int_equal(pose_attention_forward(a, x, 3, n, lengths, out1, cnt), POSE_OK);
  for (size_t b = 0; b < 3; b++) {
    const size_t len = lengths[b];
    assert_int_equal(pose_attention_forward(a, x + b * n * d, 1, len, NULL, alone, len * d),
                     POSE_OK);
    assert_memory_equal(out1 + b * n * d, alone, len * d * sizeof(float));
    for (size_t i = len * d; i < n * d; i++) assert_true(out1[b * n * d + i] == 0.0f);
  }
  assert_int_equal(pose_set_num_threads(3), POSE_OK);
  assert_int_equal(pose_attention_forward(a, x, 3, n, lengths, out3, cnt), POSE_OK);
  assert_memory_equal(out1, out3, cnt * sizeof(float));
  free(x), free(out1), free(out3), free(alone);
  pose_attention_free(a);
  assert_int_equal(pose_set_num_threads(before), POSE_OK);
}
