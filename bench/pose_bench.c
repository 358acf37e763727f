/*
 * pose_bench -- times libpose's full, strided, adaptive, local_strided, hierarchical and
 * importance attention (and the seed's models)
 * and reports every number as a ratio measured in the same run: against full attention, against
 * the machine's own sgemm rate, and (with bench/compare_torch.py) against PyTorch.
 *
 * With no arguments it runs the seed's slide 8 comparison (one sequence of 10000 positions,
 * dim 256, skip 10: nn.MultiheadAttention with 8 heads against the single-head
 * SkipWiseAttention, plus strided attention with the same 8-head layout as full), then the
 * slide 13 sweep in a compact form. `pose_bench --quality` measures what skipping costs: each
 * mode's output against full attention's with the same weights on structured inputs
 * (bench_inputs.c). `pose_bench --help` lists the options; bench/README.md explains the columns.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sysconf, isatty */
#endif

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pose.h>

#include "bench_alloc.h"
#include "bench_inputs.h"

#define MAX_SEQ_LENS 64
#define MAX_CASES 8
#define NUM_MODES 6

/* Exit codes: 0 all cases ran, 1 a case failed (the rest still ran), 2 bad command line. */
enum { EXIT_CASE_FAILED = 1, EXIT_USAGE = 2 };

typedef enum layout_choice { LAYOUT_BOTH, LAYOUT_QKV, LAYOUT_SEP } layout_choice;

typedef struct options {
  size_t seq_lens[MAX_SEQ_LENS];
  size_t num_seq_lens;
  size_t dim, heads, skip, batch, max_seq_len, sgemm_size;
  size_t window, num_global, levels, top_m; /* local_strided (2), hierarchical, importance */
  bool modes[NUM_MODES]; /* indexed by pose_attention_mode */
  layout_choice layout;
  int threads;
  int reps; /* 0: chosen from the warm-up time */
  bool json, models, sweep, quality;
  bool inputs[BENCH_INPUT_COUNT]; /* --quality inputs, indexed by bench_input */
  /* Which options were given: the default run differs from an explicit one (see main). */
  bool seq_lens_set, dim_set, heads_set, skip_set, batch_set, modes_set, layout_set;
  bool max_seq_len_set, inputs_set;
} options;

/* The parameters of the modes beyond full/strided/adaptive, set for the mode cfg has. */
static void set_mode_params(const options *o, pose_attention_config *cfg) {
  cfg->window = cfg->mode == POSE_MODE_LOCAL_STRIDED ? o->window : 0;
  cfg->num_global = cfg->mode == POSE_MODE_LOCAL_STRIDED ? o->num_global : 0;
  cfg->levels = cfg->mode == POSE_MODE_HIERARCHICAL ? o->levels : 0;
  cfg->top_m = cfg->mode == POSE_MODE_IMPORTANCE ? o->top_m : 0;
}

/* One attention configuration to time: which positions are attended and how weights are laid
 * out are independent (pose.h), so a case names both. */
typedef struct attn_case {
  pose_attention_mode mode;
  pose_attention_layout layout;
  size_t heads;
} attn_case;

typedef struct result {
  const char *bench; /* "attention", "sweep" or "model" */
  const char *model; /* model kind, NULL for attention */
  pose_attention_mode mode;
  pose_attention_layout layout;
  size_t batch, seq_len, dim, heads, skip, keys, layers, max_seq_len;
  int reps;
  double seconds, flops;
  size_t workspace, weights;
  double speedup, ideal; /* NAN when no full case was measured */
  char ref[32];          /* label of the full case the speedup is against */
  bool ref_fallback;     /* that full case has another layout or head count */
} result;

/* Process-wide state of one bench run. */
static int g_threads;
static double g_sgemm_gflops = NAN;
static int g_failures;
static bool g_progress; /* stderr is a terminal: show what is running */

/* ---- small helpers ------------------------------------------------------------------------ */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void report_failure(const char *what, pose_status st) {
  const char *detail = pose_last_error();
  fprintf(stderr, "pose_bench: %s failed: %s%s%s\n", what, pose_status_string(st),
          detail[0] ? ": " : "", detail);
  g_failures++;
}

static void progress(const char *fmt, const char *label, size_t seq_len) {
  if (!g_progress) return;
  fprintf(stderr, "\r\033[K");
  fprintf(stderr, fmt, label, seq_len);
  fflush(stderr);
}

static void progress_done(void) {
  if (g_progress) fprintf(stderr, "\r\033[K");
}

/* Uniform floats in [-1, 1) from a fixed xorshift stream, so every run times the same data. */
static void fill_random(float *x, size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x[i] = (float)((double)(s >> 40) / (double)(1ull << 23) - 1.0);
  }
}

/* malloc of a*b*c elements of size `size`, NULL (with a message) on overflow or failure. */
static void *alloc_elems(size_t a, size_t b, size_t c, size_t size, const char *what) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, c, &n) ||
      __builtin_mul_overflow(n, size, &n)) {
    fprintf(stderr, "pose_bench: %s: %zu x %zu x %zu elements overflow size_t\n", what, a, b, c);
    g_failures++;
    return NULL;
  }
  void *p = malloc(n == 0 ? 1 : n);
  if (p == NULL) {
    fprintf(stderr, "pose_bench: %s: cannot allocate %.1f MiB (try a smaller --batch)\n", what,
            (double)n / (1024.0 * 1024.0));
    g_failures++;
  }
  return p;
}

static const char *layout_name(pose_attention_layout layout) {
  return layout == POSE_LAYOUT_QKV_PROJ ? "qkv" : "sep";
}

static void case_label(const attn_case *c, char *buf, size_t n) {
  snprintf(buf, n, "%s %s h%zu", pose_attention_mode_string(c->mode), layout_name(c->layout),
           c->heads);
}

/* ---- timing ------------------------------------------------------------------------------- */

typedef pose_status (*run_fn)(void *ctx);

/* Repetitions when --reps is not given: about half a second of timed runs per case, at least 3
 * (a median needs them) and at most 25 (tiny cases gain nothing from more). */
static int auto_reps(double warm_seconds) {
  if (warm_seconds <= 0.0) return 25;
  double r = 0.5 / warm_seconds;
  int reps = r < 3.0 ? 3 : r > 25.0 ? 25 : (int)r;
  return reps | 1; /* odd, so the median is one measured run */
}

/* One warm-up call, then `reps` timed calls; *seconds is their median. *workspace is the largest
 * amount libpose allocated during a call beyond what it held before the call, i.e. scratch only:
 * the handle's weights were allocated before and are not counted. */
static bool measure(run_fn fn, void *ctx, int reps_opt, const char *what, double *seconds,
                    size_t *workspace, int *reps_used) {
  size_t base = bench_alloc_current();
  bench_alloc_reset_peak();
  double t0 = now_seconds();
  pose_status st = fn(ctx);
  double warm = now_seconds() - t0;
  if (st != POSE_OK) {
    report_failure(what, st);
    return false;
  }
  size_t ws = bench_alloc_peak() - base;
  int reps = reps_opt > 0 ? reps_opt : auto_reps(warm);
  double *times = malloc((size_t)reps * sizeof *times);
  if (times == NULL) {
    fprintf(stderr, "pose_bench: %s: out of memory for timings\n", what);
    g_failures++;
    return false;
  }
  for (int i = 0; i < reps; i++) {
    bench_alloc_reset_peak();
    t0 = now_seconds();
    st = fn(ctx);
    times[i] = now_seconds() - t0;
    if (st != POSE_OK) {
      report_failure(what, st);
      free(times);
      return false;
    }
    size_t used = bench_alloc_peak() - base;
    if (used > ws) ws = used;
  }
  *seconds = median(times, reps);
  *workspace = ws;
  *reps_used = reps;
  free(times);
  return true;
}

/* ---- the machine's sgemm rate ------------------------------------------------------------- */

typedef struct sgemm_ctx {
  const float *x, *w;
  float *y;
  size_t n;
} sgemm_ctx;

static pose_status run_sgemm(void *p) {
  const sgemm_ctx *c = p;
  /* No bias: pose_linear is then exactly one cblas_sgemm, x . w^T. */
  return pose_linear(c->x, c->n, c->n, c->w, NULL, c->n, c->y, c->n * c->n);
}

/* The reference every GFLOP/s is divided by: a large square sgemm through pose_linear at the same
 * thread count, measured in this run so that efficiency is a ratio on this machine, now. It is
 * measured again at the end: on a shared machine a rate that moved during the run says the
 * other numbers were taken under competition too. Returns GFLOP/s, NAN when not measured. */
static double bench_sgemm(const options *o, bool at_end) {
  size_t n = o->sgemm_size;
  double gflops = NAN;
  if (n == 0) return gflops;
  float *x = alloc_elems(n, n, 1, sizeof(float), "sgemm input");
  float *w = x == NULL ? NULL : alloc_elems(n, n, 1, sizeof(float), "sgemm weight");
  float *y = w == NULL ? NULL : alloc_elems(n, n, 1, sizeof(float), "sgemm output");
  if (x != NULL && w != NULL && y != NULL) {
    fill_random(x, n * n, 1);
    fill_random(w, n * n, 2);
    sgemm_ctx ctx = {x, w, y, n};
    double s;
    size_t ws;
    int reps;
    if (g_progress) fprintf(stderr, "measuring sgemm %zu^3 ...", n), fflush(stderr);
    bool ok = measure(run_sgemm, &ctx, o->reps > 0 ? o->reps : 5, "pose_linear (sgemm reference)",
                      &s, &ws, &reps);
    progress_done();
    if (ok) {
      double flops = 2.0 * (double)n * (double)n * (double)n;
      gflops = flops / s * 1e-9;
      if (o->json) {
        printf("{\"bench\":\"sgemm\",\"when\":\"%s\",\"m\":%zu,\"n\":%zu,\"k\":%zu,"
               "\"threads\":%d,\"reps\":%d,\"seconds\":%.9g,\"gflop\":%.9g,\"gflops\":%.6g,"
               "\"pose_version\":\"%s\"}\n",
               at_end ? "end" : "start", n, n, n, g_threads, reps, s, flops * 1e-9, gflops,
               pose_version_string());
      } else if (!at_end) {
        printf("libpose %s, %d thread%s. sgemm reference (pose_linear %zux%zux%zu, median of %d): "
               "%.3f s, %.1f GFLOP/s\n",
               pose_version_string(), g_threads, g_threads == 1 ? "" : "s", n, n, n, reps, s,
               gflops);
      } else {
        double change = gflops / g_sgemm_gflops - 1.0;
        printf("sgemm reference again at the end: %.1f GFLOP/s (%+.0f%% from the start)\n%s",
               gflops, 100.0 * change,
               fabs(change) > 0.15 ? "  the machine's speed changed during the run (other work "
                                     "competing?): read the ratios with care\n"
                                   : "");
      }
    }
  }
  free(x);
  free(w);
  free(y);
  return gflops;
}

/* ---- output ------------------------------------------------------------------------------- */

static void format_bytes(size_t bytes, char *buf, size_t n) {
  double b = (double)bytes;
  if (b < 1024.0) {
    snprintf(buf, n, "%zu B", bytes);
  } else if (b < 1024.0 * 1024.0) {
    snprintf(buf, n, "%.1f KiB", b / 1024.0);
  } else if (b < 1024.0 * 1024.0 * 1024.0) {
    snprintf(buf, n, "%.1f MiB", b / (1024.0 * 1024.0));
  } else {
    snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
  }
}

static void print_table_header(void) {
  printf("%-20s %5s %7s %5s %6s %4s %10s %8s %8s %5s %9s %7s %10s %9s\n", "case", "batch",
         "seq_len", "skip", "keys", "reps", "time_ms", "GFLOP", "GFLOP/s", "eff", "speedup",
         "ideal", "workspace", "weights");
}

static void print_row(const result *r) {
  char label[48], ws[24], wt[24], speed[16], ideal[16], eff[16];
  if (r->model != NULL) {
    snprintf(label, sizeof label, "%s %s", r->model, pose_attention_mode_string(r->mode));
  } else {
    attn_case c = {r->mode, r->layout, r->heads};
    case_label(&c, label, sizeof label);
  }
  format_bytes(r->workspace, ws, sizeof ws);
  format_bytes(r->weights, wt, sizeof wt);
  double gflops = r->flops / r->seconds * 1e-9;
  if (isnan(r->speedup)) {
    snprintf(speed, sizeof speed, "-");
    snprintf(ideal, sizeof ideal, "-");
  } else {
    snprintf(speed, sizeof speed, "%.2fx%s", r->speedup, r->ref_fallback ? "*" : "");
    snprintf(ideal, sizeof ideal, "%.2fx", r->ideal);
  }
  if (isnan(g_sgemm_gflops)) {
    snprintf(eff, sizeof eff, "-");
  } else {
    snprintf(eff, sizeof eff, "%.0f%%", 100.0 * gflops / g_sgemm_gflops);
  }
  printf("%-20s %5zu %7zu %5zu %6zu %4d %10.2f %8.3f %8.1f %5s %9s %7s %10s %9s\n", label,
         r->batch, r->seq_len, r->skip, r->keys, r->reps, r->seconds * 1e3, r->flops * 1e-9,
         gflops, eff, speed, ideal, ws, wt);
  fflush(stdout);
}

static void print_json(const result *r) {
  char model[40], speed[32], ideal[32], ref[48], sg[32], eff[32];
  double gflops = r->flops / r->seconds * 1e-9;
  if (r->model != NULL) {
    snprintf(model, sizeof model, "\"%s\"", r->model);
  } else {
    snprintf(model, sizeof model, "null");
  }
  if (isnan(r->speedup)) {
    snprintf(speed, sizeof speed, "null");
    snprintf(ideal, sizeof ideal, "null");
    snprintf(ref, sizeof ref, "null");
  } else {
    snprintf(speed, sizeof speed, "%.6g", r->speedup);
    snprintf(ideal, sizeof ideal, "%.6g", r->ideal);
    snprintf(ref, sizeof ref, "\"%s\"", r->ref);
  }
  if (isnan(g_sgemm_gflops)) {
    snprintf(sg, sizeof sg, "null");
    snprintf(eff, sizeof eff, "null");
  } else {
    snprintf(sg, sizeof sg, "%.6g", g_sgemm_gflops);
    snprintf(eff, sizeof eff, "%.6g", gflops / g_sgemm_gflops);
  }
  printf("{\"bench\":\"%s\",\"model\":%s,\"mode\":\"%s\",\"layout\":\"%s\",\"batch\":%zu,"
         "\"seq_len\":%zu,\"dim\":%zu,\"heads\":%zu,\"skip\":%zu,\"keys\":%zu,\"layers\":%zu,"
         "\"max_seq_len\":%zu,\"threads\":%d,\"reps\":%d,\"seconds\":%.9g,\"gflop\":%.9g,"
         "\"gflops\":%.6g,\"sgemm_gflops\":%s,\"efficiency\":%s,\"workspace_bytes\":%zu,"
         "\"weights_bytes\":%zu,\"speedup_vs_full\":%s,\"ideal_speedup\":%s,"
         "\"speedup_ref\":%s}\n",
         r->bench, model, pose_attention_mode_string(r->mode), layout_name(r->layout), r->batch,
         r->seq_len, r->dim, r->heads, r->skip, r->keys, r->layers, r->max_seq_len, g_threads,
         r->reps, r->seconds, r->flops * 1e-9, gflops, sg, eff, r->workspace, r->weights, speed,
         ideal, ref);
  fflush(stdout);
}

static void emit(const options *o, const result *r) {
  if (o->json) {
    print_json(r);
  } else {
    print_row(r);
  }
}

/* Fills r's speedup against the full case of the same layout and head count when one was
 * measured, otherwise against the first full case (the slide 8 comparison: the seed's
 * single-head SkipWiseAttention against 8-head nn.MultiheadAttention). */
static void set_speedup(result *r, const result *fulls, size_t nfull) {
  r->speedup = r->ideal = NAN;
  const result *ref = NULL;
  for (size_t i = 0; i < nfull && ref == NULL; i++) {
    if (fulls[i].layout == r->layout && fulls[i].heads == r->heads) ref = &fulls[i];
  }
  r->ref_fallback = ref == NULL;
  if (ref == NULL && nfull > 0) ref = &fulls[0];
  if (ref == NULL) return;
  r->speedup = ref->seconds / r->seconds;
  r->ideal = ref->flops / r->flops;
  if (ref->model != NULL) {
    snprintf(r->ref, sizeof r->ref, "%s full", ref->model);
  } else {
    attn_case c = {ref->mode, ref->layout, ref->heads};
    case_label(&c, r->ref, sizeof r->ref);
  }
}

/* ---- attention cases ---------------------------------------------------------------------- */

typedef struct attn_ctx {
  const pose_attention_module *module;
  const float *x;
  float *y;
  size_t batch, seq_len, count;
} attn_ctx;

static pose_status run_attention(void *p) {
  const attn_ctx *c = p;
  return pose_attention_forward(c->module, c->x, c->batch, c->seq_len, NULL, c->y, c->count);
}

/* The cases one attention table runs, full first so that every other row can show its speedup
 * as soon as it is measured. */
static size_t make_cases(const options *o, attn_case *cases) {
  size_t n = 0;
  size_t sep_heads = o->layout == LAYOUT_SEP && o->heads_set ? o->heads : 1;
  for (int m = 0; m < NUM_MODES; m++) {
    if (!o->modes[m]) continue;
    pose_attention_mode mode = (pose_attention_mode)m;
    /* The default "both" runs full only as slide 8 does (nn.MultiheadAttention, qkv layout),
     * and every other mode both as the seed's single-head module and in full's own layout. */
    if (o->layout == LAYOUT_SEP) {
      cases[n++] = (attn_case){mode, POSE_LAYOUT_QUERY_KEY_VALUE, sep_heads};
      continue;
    }
    if (o->layout == LAYOUT_BOTH && mode != POSE_MODE_FULL) {
      cases[n++] = (attn_case){mode, POSE_LAYOUT_QUERY_KEY_VALUE, 1};
    }
    cases[n++] = (attn_case){mode, POSE_LAYOUT_QKV_PROJ, o->heads};
  }
  return n;
}

static bool bench_attention(const options *o, const attn_case *ac, const char *bench,
                            size_t batch, size_t seq_len, size_t dim, result *r) {
  char label[48], what[96];
  case_label(ac, label, sizeof label);
  snprintf(what, sizeof what, "%s seq_len %zu", label, seq_len);
  progress("running %s, seq_len %zu ...", label, seq_len);

  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.mode = ac->mode;
  cfg.layout = ac->layout;
  cfg.dim = dim;
  cfg.num_heads = ac->heads;
  cfg.skip_factor = o->skip;
  cfg.max_seq_len = o->max_seq_len;
  set_mode_params(o, &cfg);
  cfg.seed = 1;
  pose_cost cost;
  pose_status st = pose_attention_cost(&cfg, batch, seq_len, &cost);
  if (st != POSE_OK) {
    report_failure(what, st);
    return false;
  }
  size_t before = bench_alloc_current();
  pose_attention_module *module = NULL;
  st = pose_attention_create(&cfg, &module);
  if (st != POSE_OK) {
    report_failure(what, st);
    return false;
  }
  size_t weights = bench_alloc_current() - before;
  float *x = alloc_elems(batch, seq_len, dim, sizeof(float), what);
  float *y = x == NULL ? NULL : alloc_elems(batch, seq_len, dim, sizeof(float), what);
  bool ok = false;
  if (x != NULL && y != NULL) {
    fill_random(x, batch * seq_len * dim, 3);
    attn_ctx ctx = {module, x, y, batch, seq_len, batch * seq_len * dim};
    ok = measure(run_attention, &ctx, o->reps, what, &r->seconds, &r->workspace, &r->reps);
  }
  free(x);
  free(y);
  pose_attention_free(module);
  progress_done();
  if (!ok) return false;
  r->bench = bench;
  r->model = NULL;
  r->mode = ac->mode;
  r->layout = ac->layout;
  r->batch = batch;
  r->seq_len = seq_len;
  r->dim = dim;
  r->heads = ac->heads;
  r->skip = (size_t)cost.skip_factor;
  r->keys = (size_t)cost.keys_per_query;
  r->layers = 1;
  r->max_seq_len = o->max_seq_len;
  r->flops = cost.total_flops;
  r->weights = weights;
  return true;
}

static void print_fallback_note(const attn_case *full) {
  char ref[48];
  case_label(full, ref, sizeof ref);
  printf("  * against %s: no full case with the same layout and heads was run; slide 8\n"
         "    compares the single-head seed module with 8-head nn.MultiheadAttention this way\n",
         ref);
}

/* Runs every case at every sequence length; full-table form. */
static void attention_table(const options *o, const char *bench, const size_t *seq_lens,
                            size_t nseq, size_t dim) {
  attn_case cases[MAX_CASES];
  size_t ncases = make_cases(o, cases);
  bool any_fallback = false;
  for (size_t s = 0; s < nseq; s++) {
    result fulls[MAX_CASES];
    size_t nfull = 0;
    for (size_t i = 0; i < ncases; i++) {
      result r;
      if (!bench_attention(o, &cases[i], bench, o->batch, seq_lens[s], dim, &r)) continue;
      if (r.mode == POSE_MODE_FULL) fulls[nfull++] = r;
      set_speedup(&r, fulls, nfull);
      any_fallback |= r.ref_fallback && !isnan(r.speedup);
      emit(o, &r);
    }
  }
  if (!o->json && any_fallback) print_fallback_note(&cases[0]);
}

/* The slide 13 sweep as one line per sequence length: times and speedups only. */
static void sweep_compact(const options *o, const size_t *seq_lens, size_t nseq, size_t dim) {
  attn_case cases[MAX_CASES];
  size_t ncases = make_cases(o, cases);
  char label[48];
  if (!o->json) {
    printf("%7s", "seq_len");
    for (size_t i = 0; i < ncases; i++) {
      case_label(&cases[i], label, sizeof label);
      printf(" %16s", label);
    }
    for (size_t i = 0; i < ncases; i++) {
      if (cases[i].mode == POSE_MODE_FULL) continue;
      case_label(&cases[i], label, sizeof label);
      printf(" %16s", label);
    }
    printf("\n%7s", "");
    for (size_t i = 0; i < ncases; i++) printf(" %16s", "time_ms");
    for (size_t i = 0; i < ncases; i++) {
      if (cases[i].mode != POSE_MODE_FULL) printf(" %16s", "speedup");
    }
    printf("\n");
  }
  bool any_fallback = false;
  for (size_t s = 0; s < nseq; s++) {
    result rows[MAX_CASES], fulls[MAX_CASES];
    bool ok[MAX_CASES];
    size_t nfull = 0;
    for (size_t i = 0; i < ncases; i++) {
      ok[i] = bench_attention(o, &cases[i], "sweep", o->batch, seq_lens[s], dim, &rows[i]);
      if (!ok[i]) continue;
      if (rows[i].mode == POSE_MODE_FULL) fulls[nfull++] = rows[i];
      set_speedup(&rows[i], fulls, nfull);
      if (o->json) print_json(&rows[i]);
    }
    if (o->json) continue;
    printf("%7zu", seq_lens[s]);
    for (size_t i = 0; i < ncases; i++) {
      if (ok[i]) {
        printf(" %16.3f", rows[i].seconds * 1e3);
      } else {
        printf(" %16s", "failed");
      }
    }
    for (size_t i = 0; i < ncases; i++) {
      if (cases[i].mode == POSE_MODE_FULL) continue;
      if (ok[i] && !isnan(rows[i].speedup)) {
        char sp[24];
        snprintf(sp, sizeof sp, "%.2fx%s", rows[i].speedup, rows[i].ref_fallback ? "*" : "");
        any_fallback |= rows[i].ref_fallback;
        printf(" %16s", sp);
      } else {
        printf(" %16s", "-");
      }
    }
    printf("\n");
    fflush(stdout);
  }
  if (!o->json && any_fallback) print_fallback_note(&cases[0]);
}

/* ---- models ------------------------------------------------------------------------------- */

typedef struct model_spec {
  pose_model_kind kind;
  size_t batch, seq_len;
  const char *slide;
} model_spec;

/* The seed's example configurations (pose_model_config_init gives their sizes). */
static const model_spec model_specs[] = {
    {POSE_MODEL_ENCODER, 32, 100, "slide 9"},
    {POSE_MODEL_CLASSIFIER, 16, 500, "slide 11"},
    {POSE_MODEL_SUMMARIZER, 16, 1000, "slide 10"},
};

/* FLOPs of one model forward, counted as pose_attention_cost counts (a multiply-add is 2,
 * linear layers 2*rows*in*out, attention 4*pairs*head_dim):
 *   per layer: the attention cost for the layer's query/key/value layout (queries projected
 *   for all rows = batch*seq_len, keys and values only for the kept rows, plus the scores and
 *   weighted sums) + the feed-forward 2*rows*dim*ff_dim * 2;
 *   classifier: + feature_extractor 2*rows*input_dim*dim + classifier 2*batch*dim*num_classes;
 *   summarizer: + output_proj 2*rows*dim*vocab_size (the embedding is a lookup: 0 FLOPs).
 * LayerNorm, ReLU, softmax, residual adds and pooling are O(rows*dim) and not counted. */
static bool model_flops(const pose_model_config *m, size_t batch, size_t seq_len, double *flops,
                        pose_cost *cost) {
  pose_attention_config a;
  pose_attention_config_init(&a);
  a.mode = m->mode;
  a.layout = POSE_LAYOUT_QUERY_KEY_VALUE;
  a.dim = m->dim;
  a.num_heads = m->num_heads;
  a.skip_factor = m->skip_factor;
  a.max_seq_len = m->max_seq_len;
  a.window = m->window;
  a.causal = m->causal;
  a.levels = m->levels;
  a.top_m = m->top_m;
  a.num_global = m->num_global;
  pose_status st = pose_attention_cost(&a, batch, seq_len, cost);
  if (st != POSE_OK) {
    report_failure("pose_attention_cost (model FLOP count)", st);
    return false;
  }
  double rows = (double)batch * (double)seq_len, d = (double)m->dim;
  double layer = cost->total_flops + 2.0 * (2.0 * rows * d * (double)m->ff_dim);
  double total = (double)m->num_layers * layer;
  if (m->kind == POSE_MODEL_CLASSIFIER) {
    total += 2.0 * rows * (double)m->input_dim * d + 2.0 * (double)batch * d *
             (double)m->num_classes;
  } else if (m->kind == POSE_MODEL_SUMMARIZER) {
    total += 2.0 * rows * d * (double)m->vocab_size;
  }
  *flops = total;
  return true;
}

typedef struct model_ctx {
  const pose_model *model;
  const float *x;
  const int64_t *tokens;
  float *y;
  size_t batch, seq_len, count;
} model_ctx;

static pose_status run_model(void *p) {
  const model_ctx *c = p;
  if (c->tokens != NULL) {
    return pose_model_forward_tokens(c->model, c->tokens, c->batch, c->seq_len, NULL, c->y,
                                     c->count);
  }
  return pose_model_forward(c->model, c->x, c->batch, c->seq_len, NULL, c->y, c->count);
}

static bool bench_model(const options *o, const model_spec *spec, pose_attention_mode mode,
                        result *r) {
  const char *kind = pose_model_kind_string(spec->kind);
  const char *mode_name = pose_attention_mode_string(mode);
  char what[96], label[48];
  snprintf(label, sizeof label, "%s %s", kind, mode_name);
  pose_model_config cfg;
  pose_status st = pose_model_config_init(&cfg, spec->kind);
  if (st != POSE_OK) {
    report_failure(kind, st);
    return false;
  }
  cfg.mode = mode;
  if (o->skip_set) cfg.skip_factor = o->skip;
  if (o->heads_set) cfg.num_heads = o->heads;
  cfg.max_seq_len = o->max_seq_len;
  if (mode == POSE_MODE_LOCAL_STRIDED) cfg.window = o->window, cfg.num_global = o->num_global;
  if (mode == POSE_MODE_HIERARCHICAL) cfg.levels = o->levels;
  if (mode == POSE_MODE_IMPORTANCE) cfg.top_m = o->top_m;
  cfg.seed = 1;
  size_t batch = o->batch_set ? o->batch : spec->batch, seq_len = spec->seq_len;
  snprintf(what, sizeof what, "%s, batch %zu, seq_len %zu", label, batch, seq_len);
  progress("running %s, seq_len %zu ...", label, seq_len);

  size_t before = bench_alloc_current();
  pose_model *model = NULL;
  st = pose_model_create(&cfg, &model);
  if (st != POSE_OK) {
    report_failure(what, st);
    progress_done();
    return false;
  }
  size_t weights = bench_alloc_current() - before;
  /* FLOPs from the configuration the model resolved (ff_dim 0 means 4 * dim), not the request. */
  double flops = 0.0;
  pose_cost cost;
  size_t out_count = 0;
  st = pose_model_get_config(model, &cfg);
  if (st == POSE_OK) st = pose_model_output_count(model, batch, seq_len, &out_count);
  if (st == POSE_OK && !model_flops(&cfg, batch, seq_len, &flops, &cost)) {
    pose_model_free(model);
    progress_done();
    return false;
  }
  if (st != POSE_OK) {
    report_failure(what, st);
    pose_model_free(model);
    progress_done();
    return false;
  }
  model_ctx ctx = {model, NULL, NULL, NULL, batch, seq_len, out_count};
  float *x = NULL;
  int64_t *tokens = NULL;
  bool ok = false;
  if (spec->kind == POSE_MODEL_SUMMARIZER) {
    tokens = alloc_elems(batch, seq_len, 1, sizeof *tokens, what);
    if (tokens != NULL) {
      uint64_t s = 12345;
      for (size_t i = 0; i < batch * seq_len; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int64_t)((s >> 33) % cfg.vocab_size);
      }
    }
    ctx.tokens = tokens;
  } else {
    size_t width = spec->kind == POSE_MODEL_CLASSIFIER ? cfg.input_dim : cfg.dim;
    x = alloc_elems(batch, seq_len, width, sizeof *x, what);
    if (x != NULL) fill_random(x, batch * seq_len * width, 4);
    ctx.x = x;
  }
  float *y = ctx.x == NULL && ctx.tokens == NULL ? NULL
             : alloc_elems(out_count, 1, 1, sizeof *y, what);
  ctx.y = y;
  if ((ctx.x != NULL || ctx.tokens != NULL) && y != NULL) {
    ok = measure(run_model, &ctx, o->reps, what, &r->seconds, &r->workspace, &r->reps);
  }
  free(x);
  free(tokens);
  free(y);
  pose_model_free(model);
  progress_done();
  if (!ok) return false;
  r->bench = "model";
  r->model = kind;
  r->mode = mode;
  r->layout = POSE_LAYOUT_QUERY_KEY_VALUE;
  r->batch = batch;
  r->seq_len = seq_len;
  r->dim = cfg.dim;
  r->heads = cfg.num_heads;
  r->skip = (size_t)cost.skip_factor;
  r->keys = (size_t)cost.keys_per_query;
  r->layers = cfg.num_layers;
  r->max_seq_len = cfg.max_seq_len;
  r->flops = flops;
  r->weights = weights;
  return true;
}

static void models_table(const options *o) {
  for (size_t i = 0; i < sizeof model_specs / sizeof model_specs[0]; i++) {
    result fulls[1];
    size_t nfull = 0;
    for (int m = 0; m < NUM_MODES; m++) {
      if (!o->modes[m]) continue;
      result r;
      if (!bench_model(o, &model_specs[i], (pose_attention_mode)m, &r)) continue;
      if (r.mode == POSE_MODE_FULL) fulls[nfull++] = r;
      set_speedup(&r, fulls, nfull);
      r.ref_fallback = false; /* a model's full run always has the same layout and heads */
      emit(o, &r);
    }
  }
}

/* ---- quality: each mode's output against full attention's ---------------------------------- */

/* One row of the quality table. Timing fields as in `result`; the error fields compare this
 * mode's output with full attention's on the same input and the same weights. */
typedef struct quality_row {
  pose_attention_mode mode;
  bench_input input;
  pose_attention_layout layout;
  size_t batch, seq_len, dim, heads, skip, keys;
  int reps;
  double seconds, flops;
  size_t workspace;
  double speedup, ideal;     /* full's time (FLOPs) over this row's */
  double rel_error, cosine;  /* ||y - y_full||_F / ||y_full||_F; mean cosine of rows */
} quality_row;

/* The (layout, heads) configurations the quality table compares, each against its own full
 * module: the weights differ between layouts, so a full reference cannot be shared. */
static size_t quality_configs(const options *o, attn_case *cfgs) {
  size_t n = 0;
  size_t sep_heads = o->layout == LAYOUT_SEP && o->heads_set ? o->heads : 1;
  if (o->layout != LAYOUT_QKV) {
    cfgs[n++] = (attn_case){POSE_MODE_FULL, POSE_LAYOUT_QUERY_KEY_VALUE, sep_heads};
  }
  if (o->layout != LAYOUT_SEP) {
    cfgs[n++] = (attn_case){POSE_MODE_FULL, POSE_LAYOUT_QKV_PROJ, o->heads};
  }
  return n;
}

/* Relative Frobenius error and mean row cosine of y against ref, both [rows, dim], in double so
 * that float rounding in the sums does not show up as error. A row that is zero in both has
 * cosine 1 (they agree); zero in only one, cosine 0. */
static void compare_outputs(const float *y, const float *ref, size_t rows, size_t dim,
                            double *rel_error, double *cosine) {
  double diff2 = 0.0, ref2 = 0.0, cos_sum = 0.0;
  for (size_t r = 0; r < rows; r++) {
    const float *a = y + r * dim, *b = ref + r * dim;
    double ab = 0.0, aa = 0.0, bb = 0.0, dd = 0.0;
    for (size_t c = 0; c < dim; c++) {
      double av = a[c], bv = b[c];
      ab += av * bv;
      aa += av * av;
      bb += bv * bv;
      dd += (av - bv) * (av - bv);
    }
    diff2 += dd;
    ref2 += bb;
    if (aa == 0.0 && bb == 0.0) {
      cos_sum += 1.0;
    } else if (aa > 0.0 && bb > 0.0) {
      cos_sum += ab / (sqrt(aa) * sqrt(bb));
    }
  }
  *rel_error = ref2 > 0.0 ? sqrt(diff2 / ref2) : (diff2 > 0.0 ? INFINITY : 0.0);
  *cosine = rows > 0 ? cos_sum / (double)rows : 1.0;
}

/* Weight names of a layout's state_dict (pose.h); qkv.bias only when the module has one. */
static size_t weight_names(const pose_attention_config *cfg, const char **names) {
  size_t n = 0;
  if (cfg->layout == POSE_LAYOUT_QKV_PROJ) {
    names[n++] = "qkv.weight";
    if (cfg->qkv_bias) names[n++] = "qkv.bias";
    names[n++] = "proj.weight";
    names[n++] = "proj.bias";
  } else {
    static const char *const sep[] = {"query.weight", "query.bias", "key.weight",
                                      "key.bias",     "value.weight", "value.bias"};
    for (size_t i = 0; i < sizeof sep / sizeof sep[0]; i++) names[n++] = sep[i];
  }
  return n;
}

/* A module of `mode` with exactly full's weights: read back from the full module and passed to
 * pose_attention_create_from_weights, so the only difference between the outputs is which
 * positions are attended. */
static pose_status clone_with_mode(const pose_attention_module *full, pose_attention_mode mode,
                                   const options *o, pose_attention_module **out) {
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  pose_status st = pose_attention_get_config(full, &cfg);
  if (st != POSE_OK) return st;
  cfg.mode = mode;
  cfg.skip_factor = o->skip;
  cfg.max_seq_len = o->max_seq_len;
  set_mode_params(o, &cfg);
  const char *names[8];
  pose_weight weights[8];
  size_t n = weight_names(&cfg, names);
  for (size_t i = 0; i < n; i++) {
    weights[i].name = names[i];
    st = pose_attention_get_weight(full, names[i], &weights[i].data, &weights[i].count);
    if (st != POSE_OK) return st;
  }
  return pose_attention_create_from_weights(&cfg, weights, n, out);
}

/* Times `module` on x (median as measure() does), leaving its output in y, and fills the
 * timing and cost fields of *row. */
static bool quality_time(const options *o, const pose_attention_module *module, const float *x,
                         float *y, const char *what, quality_row *row) {
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  pose_status st = pose_attention_get_config(module, &cfg);
  pose_cost cost;
  if (st == POSE_OK) st = pose_attention_cost(&cfg, row->batch, row->seq_len, &cost);
  if (st != POSE_OK) {
    report_failure(what, st);
    return false;
  }
  size_t count = row->batch * row->seq_len * row->dim;
  attn_ctx ctx = {module, x, y, row->batch, row->seq_len, count};
  if (!measure(run_attention, &ctx, o->reps, what, &row->seconds, &row->workspace, &row->reps)) {
    return false;
  }
  row->skip = (size_t)cost.skip_factor;
  row->keys = (size_t)cost.keys_per_query;
  row->flops = cost.total_flops;
  return true;
}

static void print_quality_header(void) {
  printf("%-7s %-16s %7s %5s %6s %4s %10s %8s %7s %10s %8s\n", "input", "case", "seq_len",
         "skip", "keys", "reps", "time_ms", "speedup", "ideal", "rel_error", "cosine");
}

static void emit_quality(const options *o, const quality_row *r) {
  char label[48];
  attn_case c = {r->mode, r->layout, r->heads};
  case_label(&c, label, sizeof label);
  if (!o->json) {
    printf("%-7s %-16s %7zu %5zu %6zu %4d %10.2f %7.2fx %6.2fx %10.3g %8.4f\n",
           bench_input_name(r->input), label, r->seq_len, r->skip, r->keys, r->reps,
           r->seconds * 1e3, r->speedup, r->ideal, r->rel_error, r->cosine);
  } else {
    printf("{\"bench\":\"quality\",\"mode\":\"%s\",\"input\":\"%s\",\"layout\":\"%s\","
           "\"batch\":%zu,\"seq_len\":%zu,\"dim\":%zu,\"heads\":%zu,\"skip\":%zu,\"keys\":%zu,"
           "\"max_seq_len\":%zu,\"threads\":%d,\"reps\":%d,\"seconds\":%.9g,\"gflop\":%.9g,"
           "\"workspace_bytes\":%zu,\"speedup_vs_full\":%.6g,\"ideal_speedup\":%.6g,"
           "\"rel_error\":%.9g,\"cosine\":%.9g}\n",
           pose_attention_mode_string(r->mode), bench_input_name(r->input),
           layout_name(r->layout), r->batch, r->seq_len, r->dim, r->heads, r->skip, r->keys,
           o->max_seq_len, g_threads, r->reps, r->seconds, r->flops * 1e-9, r->workspace,
           r->speedup, r->ideal, r->rel_error, r->cosine);
  }
  fflush(stdout);
}

/* One (layout, heads, seq_len): a seeded full module, a module of every other selected mode
 * with the same weights, and each input kind run through all of them. The full row is printed
 * too (error 0, cosine 1 by definition) so its time stands in the table. */
static void quality_case(const options *o, const attn_case *ac, size_t seq_len) {
  char label[48], what[128];
  case_label(ac, label, sizeof label);
  snprintf(what, sizeof what, "quality %s seq_len %zu", label, seq_len);
  progress("quality %s, seq_len %zu ...", label, seq_len);

  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.mode = POSE_MODE_FULL;
  cfg.layout = ac->layout;
  cfg.dim = o->dim;
  cfg.num_heads = ac->heads;
  cfg.skip_factor = o->skip;
  cfg.max_seq_len = o->max_seq_len;
  cfg.seed = 1;
  pose_attention_module *modules[NUM_MODES] = {NULL};
  pose_status st = pose_attention_create(&cfg, &modules[POSE_MODE_FULL]);
  if (st != POSE_OK) {
    report_failure(what, st);
    progress_done();
    return;
  }
  for (int m = 1; m < NUM_MODES; m++) {
    if (!o->modes[m]) continue;
    char w[160];
    snprintf(w, sizeof w, "%s: %s module with full's weights", what,
             pose_attention_mode_string((pose_attention_mode)m));
    st = clone_with_mode(modules[POSE_MODE_FULL], (pose_attention_mode)m, o, &modules[m]);
    if (st != POSE_OK) {
      report_failure(w, st);
      modules[m] = NULL; /* the mode is left out; the others still run */
    }
  }
  float *x = alloc_elems(o->batch, seq_len, o->dim, sizeof(float), what);
  float *yf = x == NULL ? NULL : alloc_elems(o->batch, seq_len, o->dim, sizeof(float), what);
  float *ym = yf == NULL ? NULL : alloc_elems(o->batch, seq_len, o->dim, sizeof(float), what);
  for (int in = 0; in < BENCH_INPUT_COUNT && ym != NULL; in++) {
    if (!o->inputs[in]) continue;
    bench_input kind = (bench_input)in;
    bench_input_fill(kind, x, o->batch, seq_len, o->dim, 3);
    quality_row full = {.mode = POSE_MODE_FULL, .input = kind, .layout = ac->layout,
                        .batch = o->batch, .seq_len = seq_len, .dim = o->dim,
                        .heads = ac->heads};
    snprintf(what, sizeof what, "quality %s seq_len %zu input %s", label, seq_len,
             bench_input_name(kind));
    if (!quality_time(o, modules[POSE_MODE_FULL], x, yf, what, &full)) continue;
    full.speedup = full.ideal = 1.0;
    full.rel_error = 0.0;
    full.cosine = 1.0;
    emit_quality(o, &full);
    for (int m = 1; m < NUM_MODES; m++) {
      if (modules[m] == NULL) continue;
      quality_row r = full;
      r.mode = (pose_attention_mode)m;
      attn_case mc = {r.mode, ac->layout, ac->heads};
      char ml[48];
      case_label(&mc, ml, sizeof ml);
      snprintf(what, sizeof what, "quality %s seq_len %zu input %s", ml, seq_len,
               bench_input_name(kind));
      progress("quality %s, seq_len %zu ...", ml, seq_len);
      if (!quality_time(o, modules[m], x, ym, what, &r)) continue;
      r.speedup = full.seconds / r.seconds;
      r.ideal = full.flops / r.flops;
      compare_outputs(ym, yf, o->batch * seq_len, o->dim, &r.rel_error, &r.cosine);
      progress_done();
      emit_quality(o, &r);
    }
  }
  free(x);
  free(yf);
  free(ym);
  for (int m = 0; m < NUM_MODES; m++) pose_attention_free(modules[m]);
  progress_done();
}

static void quality_table(const options *o, const size_t *seq_lens, size_t nseq) {
  attn_case cfgs[2];
  size_t ncfg = quality_configs(o, cfgs);
  for (size_t i = 0; i < ncfg; i++) {
    if (!o->json) {
      printf("\n== quality vs full attention: %s layout, %zu head%s, dim %zu, batch %zu, "
             "skip %zu", layout_name(cfgs[i].layout), cfgs[i].heads,
             cfgs[i].heads == 1 ? "" : "s", o->dim, o->batch, o->skip);
      if (o->modes[POSE_MODE_ADAPTIVE]) printf(", adaptive max_seq_len %zu", o->max_seq_len);
      printf(" ==\n");
      print_quality_header();
    }
    for (size_t s = 0; s < nseq; s++) quality_case(o, &cfgs[i], seq_lens[s]);
  }
}

/* ---- command line ------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
"usage: pose_bench [options]\n"
"\n"
"Times libpose attention and reports seconds, GFLOP/s, efficiency against this machine's own\n"
"sgemm, speedup over full attention and the scratch memory of a forward call.\n"
"With no options: the slide 8 case (seq_len 10000, dim 256, 8 heads, skip 10, batch 1;\n"
"full and strided), then the slide 13 sweep (seq_len 100..1000, dim 64, skip 2) compactly.\n"
"\n"
"cases\n"
"  --seq-lens N,N,...   sequence lengths (default 10000; --sweep: 100,200,...,1000)\n"
"  --dim N              model width (default 256; --sweep: 64)\n"
"  --heads N            heads of the qkv-layout cases, and of the sep cases with --layout sep\n"
"                       (default 8; sep 1); for --models, the models' heads (seed: 1)\n"
"  --skip N             strided skip factor k (default 10; --sweep and --models: 2)\n"
"  --batch N            batch size (default 1); with --models it replaces the seed batch\n"
"                       sizes (32, 16, 16) -- the summarizer's output alone is\n"
"                       batch*1000*30000 floats, 1.9 GB at the seed's batch 16\n"
"  --modes LIST         full,strided,adaptive,local_strided,hierarchical,importance (default\n"
"                       full,strided); full always runs first\n"
"  --window N           local_strided half-window (default 16)\n"
"  --global N           local_strided global positions 0..N-1 attended by every query\n"
"                       (default 0)\n"
"  --levels N           hierarchical levels k, 2k, ..., 1..64 (default 3)\n"
"  --top-m N            importance keys per 256-query block (default 0: ceil(seq_len / k))\n"
"  --layout L           qkv: fused qkv + proj (slide 1 POSEAttention, nn.MultiheadAttention)\n"
"                       sep: separate query/key/value (slide 3 SkipWiseAttention)\n"
"                       both (default): full as qkv; other modes as the seed's single-head\n"
"                       sep module and as qkv with full's heads\n"
"  --max-seq-len N      adaptive mode's max_seq_len, >= 10 (default 1000)\n"
"  --sweep              the slide 13 sweep in full-table form\n"
"  --models             the seed's models instead: slide 9 encoder (batch 32, seq 100),\n"
"                       slide 11 classifier (batch 16, seq 500), slide 10 summarizer (batch 16,\n"
"                       seq 1000), in each --modes mode (skip 2, 1 head unless given)\n"
"  --quality            speed/quality trade-off instead: each --modes mode (default all three)\n"
"                       with full attention's own weights, its output's relative error and\n"
"                       mean row cosine against full's, next to time and speedup\n"
"                       (default seq-lens 1000,4000)\n"
"  --input LIST         --quality inputs: noise (uniform), smooth (low-frequency sinusoids),\n"
"                       local (random tokens in runs of 1..8); default all three\n"
"measurement\n"
"  --threads N          libpose and OpenBLAS threads (default: online CPUs; 0 = the same)\n"
"  --reps N             timed runs after one warm-up; the median is reported\n"
"                       (default: about 0.5 s of runs per case, 3 to 25)\n"
"  --sgemm-size N       size of the square sgemm reference (default 2048; 0 skips it)\n"
"output\n"
"  --json               one JSON object per line instead of the table\n"
"  --help               this text\n"
"\n"
"Exit status: 0 ok, 1 a case failed (the others still ran), 2 bad command line.\n");
}

static bool parse_size(const char *opt, const char *s, size_t min, size_t max, size_t *out) {
  char *end;
  errno = 0;
  if (s == NULL || *s == '\0' || *s == '-' || *s == '+' || *s == ' ') goto bad;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) goto bad;
  *out = (size_t)v;
  return true;
bad:
  fprintf(stderr, "pose_bench: %s needs a whole number in %zu..%zu, got '%s'\n", opt, min, max,
          s == NULL ? "" : s);
  return false;
}

static bool parse_seq_lens(const char *s, options *o) {
  char buf[1024];
  if (strlen(s) >= sizeof buf) {
    fprintf(stderr, "pose_bench: --seq-lens list is too long\n");
    return false;
  }
  strcpy(buf, s);
  o->num_seq_lens = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    if (o->num_seq_lens == MAX_SEQ_LENS) {
      fprintf(stderr, "pose_bench: --seq-lens takes at most %d values\n", MAX_SEQ_LENS);
      return false;
    }
    if (!parse_size("--seq-lens", tok, 1, (size_t)1 << 31, &o->seq_lens[o->num_seq_lens])) {
      return false;
    }
    o->num_seq_lens++;
  }
  if (o->num_seq_lens == 0) {
    fprintf(stderr, "pose_bench: --seq-lens needs at least one value\n");
    return false;
  }
  return true;
}

static bool parse_modes(const char *s, options *o) {
  char buf[256];
  if (strlen(s) >= sizeof buf) {
    fprintf(stderr, "pose_bench: --modes list is too long\n");
    return false;
  }
  strcpy(buf, s);
  memset(o->modes, 0, sizeof o->modes);
  bool any = false;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    int found = -1;
    for (int m = 0; m < NUM_MODES; m++) {
      if (strcmp(tok, pose_attention_mode_string((pose_attention_mode)m)) == 0) found = m;
    }
    if (found < 0) {
      fprintf(stderr,
              "pose_bench: unknown mode '%s' in --modes (full, strided, adaptive, "
              "local_strided, hierarchical, importance)\n",
              tok);
      return false;
    }
    o->modes[found] = true;
    any = true;
  }
  if (!any) {
    fprintf(stderr, "pose_bench: --modes needs at least one mode\n");
    return false;
  }
  return true;
}

static bool parse_inputs(const char *s, options *o) {
  char buf[256];
  if (strlen(s) >= sizeof buf) {
    fprintf(stderr, "pose_bench: --input list is too long\n");
    return false;
  }
  strcpy(buf, s);
  memset(o->inputs, 0, sizeof o->inputs);
  bool any = false;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    int found = -1;
    for (int k = 0; k < BENCH_INPUT_COUNT; k++) {
      if (strcmp(tok, bench_input_name((bench_input)k)) == 0) found = k;
    }
    if (found < 0) {
      fprintf(stderr, "pose_bench: unknown input '%s' in --input (noise, smooth, local)\n", tok);
      return false;
    }
    o->inputs[found] = true;
    any = true;
  }
  if (!any) {
    fprintf(stderr, "pose_bench: --input needs at least one of noise, smooth, local\n");
    return false;
  }
  return true;
}

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)(n > 1024 ? 1024 : n) : 1;
}

/* Returns 0 to run, 1 after --help, 2 on a bad command line (a message is printed). */
static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->seq_lens[0] = 10000;
  o->num_seq_lens = 1;
  o->dim = 256;
  o->heads = 8;
  o->skip = 10;
  o->batch = 1;
  o->max_seq_len = 1000;
  o->window = 16;
  o->levels = 3;
  o->top_m = 0;
  o->num_global = 0;
  o->sgemm_size = 2048;
  o->modes[POSE_MODE_FULL] = o->modes[POSE_MODE_STRIDED] = true;
  o->layout = LAYOUT_BOTH;
  for (int k = 0; k < BENCH_INPUT_COUNT; k++) o->inputs[k] = true;
  o->threads = online_cpus();
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout);
      return 1;
    }
    if (strcmp(arg, "--json") == 0) {
      o->json = true;
      continue;
    }
    if (strcmp(arg, "--models") == 0) {
      o->models = true;
      continue;
    }
    if (strcmp(arg, "--sweep") == 0) {
      o->sweep = true;
      continue;
    }
    if (strcmp(arg, "--quality") == 0) {
      o->quality = true;
      continue;
    }
    /* Options with a value take it as --opt=value or as the next argument. */
    static const char *const valued[] = {"--seq-lens", "--dim",         "--heads",      "--skip",
                                         "--batch",    "--modes",       "--layout",     "--threads",
                                         "--reps",     "--max-seq-len", "--sgemm-size", "--input",
                                         "--window",   "--levels",      "--top-m",      "--global"};
    const char *name = NULL, *val = NULL;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0] && name == NULL; k++) {
      size_t n = strlen(valued[k]);
      if (strncmp(arg, valued[k], n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
        name = valued[k];
        if (arg[n] == '=') {
          val = arg + n + 1;
        } else if (i + 1 < argc) {
          val = argv[++i];
        }
      }
    }
    if (name == NULL) {
      fprintf(stderr, "pose_bench: unknown option '%s' (see --help)\n", arg);
      return 2;
    }
    if (val == NULL) {
      fprintf(stderr, "pose_bench: %s needs a value (see --help)\n", name);
      return 2;
    }
    size_t v = 0;
    bool ok = true;
    if (strcmp(name, "--seq-lens") == 0) {
      ok = parse_seq_lens(val, o);
      o->seq_lens_set = true;
    } else if (strcmp(name, "--dim") == 0) {
      ok = parse_size(name, val, 1, (size_t)1 << 20, &o->dim);
      o->dim_set = true;
    } else if (strcmp(name, "--heads") == 0) {
      ok = parse_size(name, val, 1, (size_t)1 << 20, &o->heads);
      o->heads_set = true;
    } else if (strcmp(name, "--skip") == 0) {
      ok = parse_size(name, val, 1, (size_t)1 << 31, &o->skip);
      o->skip_set = true;
    } else if (strcmp(name, "--batch") == 0) {
      ok = parse_size(name, val, 1, (size_t)1 << 31, &o->batch);
      o->batch_set = true;
    } else if (strcmp(name, "--modes") == 0) {
      ok = parse_modes(val, o);
      o->modes_set = true;
    } else if (strcmp(name, "--layout") == 0) {
      if (strcmp(val, "qkv") == 0) {
        o->layout = LAYOUT_QKV;
      } else if (strcmp(val, "sep") == 0) {
        o->layout = LAYOUT_SEP;
      } else if (strcmp(val, "both") == 0) {
        o->layout = LAYOUT_BOTH;
      } else {
        fprintf(stderr, "pose_bench: --layout is qkv, sep or both, got '%s'\n", val);
        ok = false;
      }
      o->layout_set = true;
    } else if (strcmp(name, "--threads") == 0) {
      ok = parse_size(name, val, 0, 1024, &v);
      o->threads = v == 0 ? online_cpus() : (int)v;
    } else if (strcmp(name, "--reps") == 0) {
      ok = parse_size(name, val, 1, 100000, &v);
      o->reps = (int)v;
    } else if (strcmp(name, "--max-seq-len") == 0) {
      ok = parse_size(name, val, 10, (size_t)1 << 31, &o->max_seq_len);
      o->max_seq_len_set = true;
    } else if (strcmp(name, "--window") == 0) {
      ok = parse_size(name, val, 1, (size_t)1 << 31, &o->window);
    } else if (strcmp(name, "--global") == 0) {
      ok = parse_size(name, val, 0, (size_t)1 << 31, &o->num_global);
    } else if (strcmp(name, "--levels") == 0) {
      ok = parse_size(name, val, 1, 64, &o->levels);
    } else if (strcmp(name, "--top-m") == 0) {
      ok = parse_size(name, val, 0, (size_t)1 << 31, &o->top_m);
    } else if (strcmp(name, "--sgemm-size") == 0) {
      ok = parse_size(name, val, 0, 16384, &o->sgemm_size);
    } else if (strcmp(name, "--input") == 0) {
      ok = parse_inputs(val, o);
      o->inputs_set = true;
    }
    if (!ok) return 2;
  }
  if (o->inputs_set && !o->quality) {
    fprintf(stderr, "pose_bench: --input applies only to --quality\n");
    return 2;
  }
  return 0;
}

/* Checks what only the combination of options can get wrong. */
static bool check_heads(const options *o, size_t dim) {
  attn_case cases[MAX_CASES];
  size_t n = make_cases(o, cases);
  for (size_t i = 0; i < n; i++) {
    if (dim % cases[i].heads != 0) {
      fprintf(stderr, "pose_bench: %zu heads do not divide dim %zu (--heads, --dim)\n",
              cases[i].heads, dim);
      return false;
    }
  }
  return true;
}

int main(int argc, char **argv) {
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc == 1) return 0;
  if (rc != 0) return EXIT_USAGE;

  /* The options that pick the attention cases; when none is given the default run appends the
   * compact slide 13 sweep to the slide 8 case. */
  bool custom = o.seq_lens_set || o.dim_set || o.heads_set || o.skip_set || o.batch_set ||
                o.modes_set || o.layout_set || o.max_seq_len_set;
  bool main_table = !o.sweep && !o.models && !o.quality;
  /* The sweep's own defaults (slide 13), each overridable. */
  size_t sweep_lens[10];
  for (size_t i = 0; i < 10; i++) sweep_lens[i] = 100 * (i + 1);
  options sw = o;
  if (!o.dim_set) sw.dim = 64;
  if (!o.skip_set) sw.skip = 2;
  const size_t *sweep_seq = o.seq_lens_set && o.sweep ? o.seq_lens : sweep_lens;
  size_t sweep_n = o.seq_lens_set && o.sweep ? o.num_seq_lens : 10;
  bool compact_sweep = main_table && !custom;
  options mo = o;
  if (!o.skip_set) mo.skip = 2; /* the seed's models use k = 2 */
  /* --quality compares against full attention, so full always runs; without --modes every
   * other mode is compared. Its default lengths keep the run under a minute on 2 cores. */
  options qo = o;
  static const size_t quality_lens[] = {1000, 4000};
  const size_t *quality_seq = o.seq_lens_set ? o.seq_lens : quality_lens;
  size_t quality_n = o.seq_lens_set ? o.num_seq_lens : 2;
  if (!o.modes_set) qo.modes[POSE_MODE_ADAPTIVE] = true;
  qo.modes[POSE_MODE_FULL] = true;
  bool other = false;
  for (int m = 1; m < NUM_MODES; m++) other = other || qo.modes[m];
  if (o.quality && !other) {
    fprintf(stderr, "pose_bench: --quality needs a mode other than full in --modes\n");
    return EXIT_USAGE;
  }

  if (main_table && !check_heads(&o, o.dim)) return EXIT_USAGE;
  if ((o.sweep || compact_sweep) && !check_heads(&sw, sw.dim)) return EXIT_USAGE;
  if (o.quality && !check_heads(&qo, qo.dim)) return EXIT_USAGE;

  /* The counting allocator must be in place before libpose allocates anything. */
  pose_status st = bench_alloc_install();
  if (st != POSE_OK) {
    report_failure("pose_set_allocator", st);
    return EXIT_CASE_FAILED;
  }
  st = pose_set_num_threads(o.threads);
  if (st != POSE_OK) {
    report_failure("pose_set_num_threads", st);
    return EXIT_CASE_FAILED;
  }
  g_threads = pose_get_num_threads();
  g_progress = isatty(STDERR_FILENO) != 0;

  g_sgemm_gflops = bench_sgemm(&o, false);
  if (main_table) {
    if (!o.json) {
      printf("\n== %s: dim %zu, batch %zu, skip %zu", custom ? "attention" : "slide 8, one long "
             "sequence", o.dim, o.batch, o.skip);
      if (o.modes[POSE_MODE_ADAPTIVE]) printf(", adaptive max_seq_len %zu", o.max_seq_len);
      printf(" ==\n");
      print_table_header();
    }
    attention_table(&o, "attention", o.seq_lens, o.num_seq_lens, o.dim);
  }
  if (compact_sweep) {
    if (!o.json) {
      printf("\n== slide 13 sweep: dim %zu, batch %zu, skip %zu (full table: --sweep) ==\n",
             sw.dim, sw.batch, sw.skip);
    }
    sweep_compact(&sw, sweep_lens, 10, sw.dim);
  }
  if (o.sweep) {
    if (!o.json) {
      printf("\n== slide 13 sweep: dim %zu, batch %zu, skip %zu ==\n", sw.dim, sw.batch, sw.skip);
      print_table_header();
    }
    attention_table(&sw, "sweep", sweep_seq, sweep_n, sw.dim);
  }
  if (o.models) {
    if (!o.json) {
      printf("\n== seed models (slides 9, 11, 10): skip %zu, one head unless --heads%s ==\n",
             mo.skip, o.batch_set ? ", --batch overrides the seed batch sizes" : "");
      print_table_header();
    }
    models_table(&mo);
  }
  if (o.quality) quality_table(&qo, quality_seq, quality_n);
  if (!isnan(g_sgemm_gflops)) {
    if (!o.json) printf("\n");
    bench_sgemm(&o, true);
  }
  if (!o.json && (main_table || o.sweep || o.models)) {
    printf("\ntime_ms: median; eff: GFLOP/s over the sgemm rate; speedup: full's time over this"
           " one (ideal: FLOP ratio);\nworkspace: peak bytes libpose allocated during a forward"
           " call; weights: bytes the handle holds.\n");
  }
  if (!o.json && o.quality) {
    printf("\nquality: every mode uses full's weights on the same input; rel_error ="
           " ||y - y_full|| / ||y_full||,\ncosine = mean over rows of cos(y_i, y_full_i)."
           " Weights are random (seeded): the errors measure\nhow much of full attention the"
           " pattern covers on each input, not a trained model's accuracy.\n");
  }
  if (g_failures > 0) {
    fprintf(stderr, "pose_bench: %d failure%s (see above)\n", g_failures,
            g_failures == 1 ? "" : "s");
    return EXIT_CASE_FAILED;
  }
  return 0;
}
