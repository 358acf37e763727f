/* The tiled attention kernel (online softmax over key tiles, query blocks in parallel) against
 * the float64 reference on shapes around every tile edge, with strided keys, huge and equal
 * scores, under each vectorised code path; bitwise identity across thread counts and between a
 * padded batch and each sequence alone; and scratch memory that does not grow with N^2. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pose.h"
#include "pose_internal.h"
#include "ref64.h"
#include "testutil.h"

static const int thread_counts[] = {1, 2, 3, 8};
#define NUM_THREAD_COUNTS (sizeof thread_counts / sizeof thread_counts[0])

/* ---- the vectorised exp ---------------------------------------------------------------------- */

static void exp_is_accurate_on_every_path(void **state) {
  (void)state;
  enum { N = 4001 };
  float x[N], y[N];
  for (int level = POSE_SIMD_SCALAR; level <= POSE_SIMD_AVX512; level++) {
    if (pose_simd_set_level(level) != level) continue; /* this CPU lacks it */
    for (size_t n = 0; n < 40; n++) {
      /* every tail length, exact sum of the returned values */
      for (size_t i = 0; i < n; i++) y[i] = -(float)i * 0.37f;
      float sum = pose_exp_shift_sum(y, n, 0.0f);
      double want = 0.0;
      for (size_t i = 0; i < n; i++) want += exp(-(double)((float)i * 0.37f));
      assert_true(fabs(sum - want) <= 1e-6 * want + 1e-30);
    }
    for (size_t i = 0; i < N; i++) x[i] = -110.0f + 110.0f * (float)i / (N - 1);
    memcpy(y, x, sizeof x);
    pose_exp_shift_sum(y, N, 0.0f);
    for (size_t i = 0; i < N; i++) {
      double want = exp((double)x[i]);
      if (x[i] >= -87.0f) {
        if (fabs(y[i] - want) > 2.5e-7 * want) {
          test_failf("level %d: exp(%.9g) = %.9g, want %.9g", level, (double)x[i], (double)y[i],
                     want);
        }
      } else {
        assert_true(y[i] >= 0.0f && y[i] <= 2e-38f); /* underflow: 0 or a tiny value */
      }
    }
    float special[5] = {-INFINITY, -1e30f, -200.0f, NAN, 0.0f};
    pose_exp_shift_sum(special, 5, 0.0f);
    assert_true(special[0] == 0.0f && special[1] == 0.0f && special[2] == 0.0f);
    assert_true(isnan(special[3]) && special[4] == 1.0f);
    /* A shifted row: exp(x - max) of the online softmax. */
    float row[3] = {1e30f, 1e30f - 1e24f, -1e30f};
    pose_exp_shift_sum(row, 3, 1e30f);
    assert_true(row[0] == 1.0f && row[1] == 0.0f && row[2] == 0.0f);
  }
  pose_simd_set_level(-1);
}

static void online_softmax_row_edge_cases(void **state) {
  (void)state;
  float s[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, m = -INFINITY;
  double l = 0.0;
  assert_true(pose_online_softmax_row(s, 4, &m, &l) == 1.0f);
  assert_true(s[0] == 0.0f && s[3] == 0.0f && l == 0.0 && m == -INFINITY);
  float t[2] = {2.0f, 0.0f};
  float alpha = pose_online_softmax_row(t, 2, &m, &l);
  assert_true(alpha == 0.0f && m == 2.0f && t[0] == 1.0f);
  assert_true(fabs(l - (1.0 + exp(-2.0))) < 1e-6);
  float u[1] = {3.0f};
  alpha = pose_online_softmax_row(u, 1, &m, &l);
  assert_true(fabs(alpha - exp(-1.0)) < 1e-7 && m == 3.0f && u[0] == 1.0f);
}

/* ---- the kernel against the reference -------------------------------------------------------- */

/* Runs one head with keys/values at every skip-th row of [n, row] buffers (ldk = skip * row)
 * and compares with ref64_attention_head. */
static void check_head(size_t nq, size_t n, size_t skip, size_t hd, float scale, uint64_t seed,
                       float q_amp, float k_amp) {
  const size_t row = hd + 3; /* rows wider than the head, as heads inside [N, dim] are */
  const size_t rows = nq > n ? nq : n, nkeys = pose_ceil_div(n, skip);
  float *q = test_alloc_f32(rows * row), *k = test_alloc_f32(rows * row);
  float *v = test_alloc_f32(rows * row), *out = test_alloc_f32(nq * row);
  double *qd = test_alloc_f64(rows * row), *kd = test_alloc_f64(rows * row);
  double *vd = test_alloc_f64(rows * row), *ref = test_alloc_f64(nq * row);
  fill_uniform(q, rows * row, seed, -q_amp, q_amp);
  fill_uniform(k, rows * row, seed + 1, -k_amp, k_amp);
  fill_uniform(v, rows * row, seed + 2, -1, 1);
  to_f64(q, rows * row, qd);
  to_f64(k, rows * row, kd);
  to_f64(v, rows * row, vd);
  ref64_attention_head(qd, row, nq, kd, row, vd, row, n, skip, hd, scale, ref, row);
  float *work = test_alloc_f32(pose_attention_work_floats(hd, nkeys));
  /* The kept keys and values transposed, [hd, nkeys], as the attention module stores them. */
  float *kt = test_alloc_f32(hd * nkeys), *vt = test_alloc_f32(hd * nkeys);
  for (size_t j = 0; j < nkeys; j++) {
    for (size_t c = 0; c < hd; c++) {
      kt[c * nkeys + j] = k[j * skip * row + c];
      vt[c * nkeys + j] = v[j * skip * row + c];
    }
  }
  for (int transposed = 0; transposed < 2; transposed++) {
    pose_attn_head h = {.q = q,
                        .ldq = row,
                        .nq = nq,
                        .k = k,
                        .ldk = skip * row,
                        .v = v,
                        .ldv = skip * row,
                        .nkeys = nkeys,
                        .head_dim = hd,
                        .scale = scale,
                        .out = out,
                        .ldo = row};
    if (transposed) {
      h.k = kt, h.v = vt, h.ldk = h.ldv = nkeys, h.kv_transposed = true;
    }
    pose_attention_core(&h, work);
    for (size_t i = 0; i < nq; i++) {
      char what[128];
      snprintf(what, sizeof what, "nq %zu keys %zu (n %zu skip %zu) hd %zu transposed %d row %zu",
               nq, nkeys, n, skip, hd, transposed, i);
      assert_close_f64ref(out + i * row, ref + i * row, hd, TEST_ATOL, TEST_RTOL, what);
    }
  }
  free(q), free(k), free(v), free(out), free(qd), free(kd), free(vd), free(ref), free(work);
  free(kt), free(vt);
}

static void tiles_match_reference_at_every_edge(void **state) {
  (void)state;
  const size_t qt = pose_attention_tile_queries(), kt = pose_attention_tile_keys();
  const size_t nqs[] = {1, qt - 1, qt, qt + 1, 3 * qt + 5};
  const size_t nks[] = {1, kt - 1, kt, kt + 1, 3 * kt + 5};
  const size_t hds[] = {1, 2, 3, 7, 16, 31, 32, 33, 64, 100, 128, 130};
  size_t c = 0;
  for (int level = POSE_SIMD_SCALAR; level <= POSE_SIMD_AVX512; level++) {
    if (pose_simd_set_level(level) != level) continue;
    for (size_t a = 0; a < 5; a++) {
      for (size_t b = 0; b < 5; b++, c++) {
        size_t hd = hds[c % 12];
        check_head(nqs[a], nks[b], 1, hd, 1.0f / sqrtf((float)hd), 1000 + c, 1, 1);
      }
    }
  }
  pose_simd_set_level(-1);
}

static void strided_keys_are_read_in_place(void **state) {
  (void)state;
  const size_t kt = pose_attention_tile_keys();
  /* kept keys just under, at and over a tile, and skips that do and do not divide n */
  const size_t cases[][4] = {/* nq, n, skip, hd */
                             {200, 10 * kt, 10, 32},    {37, 3 * kt + 1, 3, 64},
                             {300, 2 * (kt + 1), 2, 1}, {5, 7 * (kt - 1), 7, 130},
                             {129, 1, 4, 16},           {64, 2 * kt + 5, 2, 33}};
  for (size_t c = 0; c < 6; c++) {
    check_head(cases[c][0], cases[c][1], cases[c][2], cases[c][3], 0.3f, 50 + c, 1, 1);
  }
}

static void large_scores_do_not_overflow(void **state) {
  (void)state;
  const size_t kt = pose_attention_tile_keys();
  /* scores up to ~4: a max that moves from tile to tile and rescales the accumulator */
  check_head(70, 3 * kt + 5, 1, 8, 1.0f, 77, 1, 1);
  /* scores up to ~+-36: most weights are tiny (e^-70) and the max jumps between tiles. Larger
   * scores are not compared with the float64 reference: rounding a score of ~1e3 to float32
   * already moves its exp by ~1e-4, for any float32 implementation; the exact case below
   * covers them. */
  check_head(50, kt + 7, 1, 4, 1.0f, 78, 3, 3);
  /* scores ~ +-1e30 (finite): hard maxima, the output is exactly one value row */
  const size_t nq = 40, n = 2 * kt + 3, hd = 4;
  float *q = test_alloc_f32(nq * hd), *k = test_alloc_f32(n * hd), *v = test_alloc_f32(n * hd);
  float *out = test_alloc_f32(nq * hd), *work = test_alloc_f32(pose_attention_work_floats(hd, n));
  fill_uniform(v, n * hd, 9, -1, 1);
  /* Key j scores c_j * 1e30 * sign(q) with distinct c_j, so every query's maximum is unique by
   * far more than float rounding and the output is exactly that key's value row. */
  for (size_t j = 0; j < n; j++) k[j * hd] = 1e15f * (float)((j * 733) % n + 1) / (float)n;
  for (size_t i = 0; i < nq; i++) q[i * hd] = (i % 2 ? -1e15f : 1e15f) * (1.0f + (float)i / 64);
  pose_attn_head h = {.q = q,
                      .ldq = hd,
                      .nq = nq,
                      .k = k,
                      .ldk = hd,
                      .v = v,
                      .ldv = hd,
                      .nkeys = n,
                      .head_dim = hd,
                      .scale = 1.0f,
                      .out = out,
                      .ldo = hd};
  pose_attention_core(&h, work);
  for (size_t i = 0; i < nq; i++) {
    size_t best = 0;
    for (size_t j = 1; j < n; j++) {
      float sj = q[i * hd] * k[j * hd], sb = q[i * hd] * k[best * hd];
      if (sj > sb) best = j;
    }
    assert_memory_equal(out + i * hd, v + best * hd, hd * sizeof(float));
  }
  free(q), free(k), free(v), free(out), free(work);
}

static void equal_scores_average_the_values(void **state) {
  (void)state;
  const size_t kt = pose_attention_tile_keys(), n = 2 * kt + 9, hd = 5, nq = 3;
  float *q = test_alloc_f32(nq * hd), *k = test_alloc_f32(n * hd), *v = test_alloc_f32(n * hd);
  float *out = test_alloc_f32(nq * hd), *work = test_alloc_f32(pose_attention_work_floats(hd, n));
  fill_uniform(k, n * hd, 3, -1, 1);
  fill_uniform(v, n * hd, 4, -1, 1);
  /* q = 0: every score is 0, the weights are uniform, the output the mean of the values. */
  pose_attn_head h = {.q = q,
                      .ldq = hd,
                      .nq = nq,
                      .k = k,
                      .ldk = hd,
                      .v = v,
                      .ldv = hd,
                      .nkeys = n,
                      .head_dim = hd,
                      .scale = 0.5f,
                      .out = out,
                      .ldo = hd};
  pose_attention_core(&h, work);
  double mean[5] = {0};
  for (size_t j = 0; j < n; j++) {
    for (size_t c = 0; c < hd; c++) mean[c] += v[j * hd + c] / (double)n;
  }
  for (size_t i = 0; i < nq; i++) {
    assert_close_f64ref(out + i * hd, mean, hd, TEST_ATOL, TEST_RTOL, "uniform weights");
  }
  free(q), free(k), free(v), free(out), free(work);
}

static void functional_form_across_tiles(void **state) {
  (void)state;
  const size_t kt = pose_attention_tile_keys(), qt = pose_attention_tile_queries();
  const size_t cases[][4] = {{2, 2 * kt + 3, 12, 1}, {3, 3 * qt + 5, 6, 3}, {1, 5 * kt, 40, 5}};
  for (size_t c = 0; c < 3; c++) {
    size_t b = cases[c][0], n = cases[c][1], d = cases[c][2], k = cases[c][3], cnt = b * n * d;
    float *q = test_alloc_f32(cnt), *kk = test_alloc_f32(cnt), *v = test_alloc_f32(cnt);
    float *out = test_alloc_f32(cnt), *again = test_alloc_f32(cnt);
    double *ref = test_alloc_f64(cnt);
    fill_uniform(q, cnt, 10 + c, -1, 1);
    fill_uniform(kk, cnt, 20 + c, -1, 1);
    fill_uniform(v, cnt, 30 + c, -1, 1);
    ref64_pose_attention(q, kk, v, b, n, d, k, 0.25, ref);
    for (size_t t = 0; t < NUM_THREAD_COUNTS; t++) {
      assert_int_equal(pose_set_num_threads(thread_counts[t]), POSE_OK);
      assert_int_equal(pose_attention(q, kk, v, b, n, d, k, 0.25f, t ? again : out, cnt), POSE_OK);
      if (t) assert_memory_equal(out, again, cnt * sizeof(float));
    }
    assert_close_f64ref(out, ref, cnt, TEST_ATOL, TEST_RTOL, "pose_attention");
    free(q), free(kk), free(v), free(out), free(again), free(ref);
  }
  pose_set_num_threads(1);
}

/* ---- modules: thread counts, padding, reference ---------------------------------------------- */

static void bind_module(const pose_attention_module *m, const pose_attention_config *cfg,
                        pose_weight *w, ref64_attention_weights *rw) {
  static const char *names[] = {"qkv.weight",   "qkv.bias",   "proj.weight", "proj.bias",
                                "query.weight", "query.bias", "key.weight",  "key.bias",
                                "value.weight", "value.bias"};
  size_t n = 0;
  for (size_t i = 0; i < 10; i++) {
    const float *data;
    size_t count;
    if (pose_attention_get_weight(m, names[i], &data, &count) == POSE_OK) {
      w[n++] = (pose_weight){names[i], data, count};
    }
  }
  ref64_attention_bind(cfg, w, n, "", rw);
}

/* Forward at every thread count (bitwise equal), each padded sequence alone (bitwise equal),
 * and the float64 reference (within tolerance). */
static void check_module(const pose_attention_config *cfg, size_t b, size_t n,
                         const size_t *lengths) {
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(cfg, &m), POSE_OK);
  const size_t d = cfg->dim, cnt = b * n * d;
  float *x = test_alloc_f32(cnt), *out = test_alloc_f32(cnt), *again = test_alloc_f32(cnt);
  double *ref = test_alloc_f64(cnt);
  fill_uniform(x, cnt, cfg->seed + 11, -1, 1);
  for (size_t t = 0; t < NUM_THREAD_COUNTS; t++) {
    assert_int_equal(pose_set_num_threads(thread_counts[t]), POSE_OK);
    assert_int_equal(pose_attention_forward(m, x, b, n, lengths, t ? again : out, cnt), POSE_OK);
    if (t) assert_memory_equal(out, again, cnt * sizeof(float));
  }
  for (size_t s = 0; s < b && lengths != NULL; s++) {
    assert_int_equal(
        pose_attention_forward(m, x + s * n * d, 1, lengths[s], NULL, again, lengths[s] * d),
        POSE_OK);
    assert_memory_equal(out + s * n * d, again, lengths[s] * d * sizeof(float));
  }
  pose_weight w[10];
  ref64_attention_weights rw;
  bind_module(m, cfg, w, &rw);
  ref64_attention_forward(cfg, &rw, x, b, n, lengths, ref);
  char what[96];
  snprintf(what, sizeof what, "mode %s layout %d heads %zu n %zu",
           pose_attention_mode_string(cfg->mode), (int)cfg->layout, cfg->num_heads, n);
  assert_close_f64ref(out, ref, cnt, 2e-5, 1e-5, what);
  free(x), free(out), free(again), free(ref);
  pose_attention_free(m);
  pose_set_num_threads(1);
}

static void module_threads_and_padding_are_bitwise(void **state) {
  (void)state;
  const size_t qt = pose_attention_tile_queries(), kt = pose_attention_tile_keys();
  const size_t n = kt + qt + 3, lengths[3] = {n, qt + 1, 1};
  const pose_attention_mode modes[] = {POSE_MODE_FULL, POSE_MODE_STRIDED, POSE_MODE_ADAPTIVE};
  for (size_t mi = 0; mi < 3; mi++) {
    for (int layout = 0; layout < 2; layout++) {
      pose_attention_config cfg;
      pose_attention_config_init(&cfg);
      cfg.mode = modes[mi];
      cfg.layout = (pose_attention_layout)layout;
      cfg.dim = 24;
      cfg.num_heads = layout ? 1 : 3;
      cfg.skip_factor = 3;
      cfg.max_seq_len = 200;
      cfg.qkv_bias = 1;
      cfg.seed = 90 + mi * 2 + (size_t)layout;
      check_module(&cfg, 3, n, lengths);
      check_module(&cfg, 2, qt - 1, NULL);
    }
  }
}

/* ---- models: thread counts and padding ------------------------------------------------------- */

static void run_model(const pose_model *m, const pose_model_config *c, const void *in, size_t b,
                      size_t n, const size_t *lengths, float *out, size_t count) {
  if (c->kind == POSE_MODEL_SUMMARIZER) {
    assert_int_equal(pose_model_forward_tokens(m, in, b, n, lengths, out, count), POSE_OK);
  } else {
    assert_int_equal(pose_model_forward(m, in, b, n, lengths, out, count), POSE_OK);
  }
}

static void check_model_threads(pose_model_config *cfg, size_t b, size_t n, const size_t *lengths) {
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(cfg, &m), POSE_OK);
  size_t count, width = cfg->kind == POSE_MODEL_CLASSIFIER ? cfg->input_dim : cfg->dim;
  assert_int_equal(pose_model_output_count(m, b, n, &count), POSE_OK);
  float *x = test_alloc_f32(b * n * width), *out = test_alloc_f32(count);
  float *again = test_alloc_f32(count);
  int64_t *tok = calloc(b * n, sizeof *tok);
  assert_non_null(tok);
  fill_uniform(x, b * n * width, cfg->seed, -1, 1);
  for (size_t i = 0; i < b * n; i++) tok[i] = (int64_t)((i * 7919) % cfg->vocab_size);
  const void *in = cfg->kind == POSE_MODEL_SUMMARIZER ? (const void *)tok : (const void *)x;
  for (size_t t = 0; t < NUM_THREAD_COUNTS; t++) {
    assert_int_equal(pose_set_num_threads(thread_counts[t]), POSE_OK);
    run_model(m, cfg, in, b, n, lengths, t ? again : out, count);
    if (t) assert_memory_equal(out, again, count * sizeof(float));
  }
  /* Each padded sequence alone gives the same bits (per-position outputs). */
  size_t per_pos = cfg->kind == POSE_MODEL_SUMMARIZER ? cfg->vocab_size : cfg->dim;
  for (size_t s = 0; s < b && lengths != NULL && cfg->kind != POSE_MODEL_CLASSIFIER; s++) {
    const void *in_s = cfg->kind == POSE_MODEL_SUMMARIZER ? (const void *)(tok + s * n)
                                                          : (const void *)(x + s * n * width);
    run_model(m, cfg, in_s, 1, lengths[s], NULL, again, lengths[s] * per_pos);
    assert_memory_equal(out + s * n * per_pos, again, lengths[s] * per_pos * sizeof(float));
  }
  free(x), free(out), free(again), free(tok);
  pose_model_free(m);
  pose_set_num_threads(1);
}

static void model_threads_and_padding_are_bitwise(void **state) {
  (void)state;
  const size_t qt = pose_attention_tile_queries(), n = 2 * qt + 45;
  const size_t lengths[3] = {n, qt + 1, 2};
  const pose_model_kind kinds[] = {POSE_MODEL_ENCODER, POSE_MODEL_CLASSIFIER,
                                   POSE_MODEL_SUMMARIZER};
  const pose_attention_mode modes[] = {POSE_MODE_FULL, POSE_MODE_STRIDED, POSE_MODE_ADAPTIVE};
  for (size_t k = 0; k < 3; k++) {
    pose_model_config cfg;
    assert_int_equal(pose_model_config_init(&cfg, kinds[k]), POSE_OK);
    cfg.dim = 16;
    cfg.ff_dim = 64;
    cfg.num_layers = 2;
    cfg.num_heads = 2;
    cfg.mode = modes[k];
    cfg.skip_factor = 3;
    cfg.max_seq_len = 100;
    cfg.vocab_size = 2000; /* wider than one column tile of the output GEMM */
    cfg.input_dim = 12;
    cfg.num_classes = 5;
    cfg.seed = 300 + k;
    check_model_threads(&cfg, 3, n, lengths);
    check_model_threads(&cfg, 2, 33, NULL);
  }
}

/* ---- memory: O(N * dim) scratch, not O(N^2) -------------------------------------------------- */

static size_t g_live, g_peak;

static void *counting_alloc(size_t size, size_t alignment, void *user) {
  (void)user;
  size_t *p = aligned_alloc(alignment < 16 ? 16 : alignment,
                            (size + 64 + alignment - 1) / alignment * alignment);
  if (p == NULL) return NULL;
  /* size kept in the 64 bytes before the returned block */
  char *block = (char *)p + 64;
  memcpy(block - sizeof size, &size, sizeof size);
  g_live += size;
  if (g_live > g_peak) g_peak = g_live;
  return block;
}

static void counting_free(void *ptr, void *user) {
  (void)user;
  if (ptr == NULL) return;
  size_t size;
  memcpy(&size, (char *)ptr - sizeof size, sizeof size);
  g_live -= size;
  free((char *)ptr - 64);
}

static size_t forward_peak(pose_attention_module *m, size_t n, size_t d) {
  float *x = test_alloc_f32(n * d), *out = test_alloc_f32(n * d);
  fill_uniform(x, n * d, 1, -1, 1);
  size_t before = g_live;
  g_peak = g_live;
  assert_int_equal(pose_attention_forward(m, x, 1, n, NULL, out, n * d), POSE_OK);
  free(x), free(out);
  return g_peak - before;
}

static void scratch_grows_linearly(void **state) {
  (void)state;
  const size_t kt = pose_attention_tile_keys();
  assert_int_equal(pose_attention_work_floats(32, 1000 * kt), pose_attention_work_floats(32, kt));
  pose_allocator a = {counting_alloc, counting_free, NULL};
  assert_int_equal(pose_set_allocator(&a), POSE_OK);
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.mode = POSE_MODE_FULL;
  cfg.layout = POSE_LAYOUT_QKV_PROJ;
  cfg.dim = 32;
  cfg.num_heads = 4;
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
  size_t p1 = forward_peak(m, 2048, 32), p4 = forward_peak(m, 8192, 32);
  /* Q, K, V grow 4x; the per-worker tiles do not grow at all. An N x N score matrix would make
   * the ratio 16. */
  assert_true(p4 <= 4 * p1);
  assert_true(p4 < 8192 * 32 * sizeof(float) * 4);
  pose_attention_free(m);
  assert_int_equal(pose_set_allocator(NULL), POSE_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exp_is_accurate_on_every_path),
      cmocka_unit_test(online_softmax_row_edge_cases),
      cmocka_unit_test(tiles_match_reference_at_every_edge),
      cmocka_unit_test(strided_keys_are_read_in_place),
      cmocka_unit_test(large_scores_do_not_overflow),
      cmocka_unit_test(equal_scores_average_the_values),
      cmocka_unit_test(functional_form_across_tiles),
      cmocka_unit_test(module_threads_and_padding_are_bitwise),
      cmocka_unit_test(model_threads_and_padding_are_bitwise),
      cmocka_unit_test(scratch_grows_linearly),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
