/* POSE_MODE_HIERARCHICAL and POSE_MODE_IMPORTANCE: the module against a float64 reference
 * (hierarchical: each level's masked softmax partial, merged by log-sum-exp; importance: each
 * 256-query block's top-m keys by the mean-query logit, then a masked softmax), causal and not,
 * both layouts, padding and thread counts (bitwise), the cost counts, attention maps, models
 * (save/load) and the error paths. */
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
#include "ref64.h"
#include "testutil.h"

#define CONTAINS(s) assert_non_null(strstr(pose_last_error(), s))
#define QBLOCK 256 /* the kernel's query block: part of importance attention's semantics */

typedef struct mode_case {
  pose_attention_mode mode;
  int causal;
  pose_attention_layout layout;
  size_t dim, heads, n, skip, levels, top_m;
} mode_case;

static pose_attention_config config_of(const mode_case *c) {
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.mode = c->mode;
  cfg.causal = c->causal;
  cfg.layout = c->layout;
  cfg.dim = c->dim;
  cfg.num_heads = c->heads;
  cfg.skip_factor = c->skip;
  cfg.levels = c->levels;
  cfg.top_m = c->top_m;
  cfg.qkv_bias = 1;
  cfg.seed = 17 + c->n;
  return cfg;
}

static const float *weight(const pose_attention_module *a, const char *name) {
  const float *data;
  size_t count;
  assert_int_equal(pose_attention_get_weight(a, name, &data, &count), POSE_OK);
  return data;
}

/* Skip factor of level l (capped at n: past it a level keeps only position 0). */
static size_t level_skip(size_t k, size_t l, size_t n) {
  size_t s = k;
  for (size_t i = 0; i < l && s < n; i++) s *= 2;
  return s < n ? s : n;
}

/* Importance: chosen[p] for the block starting at query i0 of a head (double projections). */
static void ref_select(const double *q, const double *k, size_t d, size_t off, size_t hd, size_t n,
                       size_t i0, int causal, size_t top_m, size_t skip, double scale,
                       unsigned char *chosen) {
  const size_t m = n - i0 < QBLOCK ? n - i0 : QBLOCK, i_last = i0 + m - 1;
  const size_t ncand = causal && i_last + 1 < n ? i_last + 1 : n;
  size_t top = top_m ? top_m : (n + skip - 1) / skip;
  if (top > ncand) top = ncand;
  double *mean = calloc(hd, sizeof *mean), *s = calloc(ncand, sizeof *s);
  for (size_t r = i0; r <= i_last; r++) {
    for (size_t c = 0; c < hd; c++) mean[c] += q[r * d + off + c];
  }
  for (size_t c = 0; c < hd; c++) mean[c] /= (double)m;
  for (size_t j = 0; j < ncand; j++) {
    double acc = 0.0;
    for (size_t c = 0; c < hd; c++) acc += mean[c] * k[j * d + off + c];
    s[j] = scale * acc;
  }
  memset(chosen, 0, n);
  for (size_t t = 0; t < top; t++) { /* the best not yet chosen, ties to the lower position */
    size_t best = SIZE_MAX;
    for (size_t j = 0; j < ncand; j++) {
      if (!chosen[j] && (best == SIZE_MAX || s[j] > s[best])) best = j;
    }
    chosen[best] = 1;
  }
  free(mean), free(s);
}

/* The float64 reference of one sequence x[n, dim]. probs (optional) receives head map_head's
 * weights over every position [n, n]. */
static void ref_new(const pose_attention_module *a, const float *x, size_t n, double *out,
                    size_t map_head, double *probs) {
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  assert_int_equal(pose_attention_get_config(a, &cfg), POSE_OK);
  const size_t d = cfg.dim, hd = d / cfg.num_heads, k = cfg.skip_factor;
  const double scale = 1.0 / sqrt((double)hd);
  double *q = test_alloc_f64(n * d), *kk = test_alloc_f64(n * d), *v = test_alloc_f64(n * d);
  double *ctx = test_alloc_f64(n * d), *s = test_alloc_f64(n), *w = test_alloc_f64(n);
  double *acc = test_alloc_f64(hd);
  unsigned char *chosen = calloc(n, 1);
  if (cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    const float *wt = weight(a, "qkv.weight"), *b = weight(a, "qkv.bias");
    ref64_linear(x, n, d, wt, b, d, q);
    ref64_linear(x, n, d, wt + d * d, b + d, d, kk);
    ref64_linear(x, n, d, wt + 2 * d * d, b + 2 * d, d, v);
  } else {
    ref64_linear(x, n, d, weight(a, "query.weight"), weight(a, "query.bias"), d, q);
    ref64_linear(x, n, d, weight(a, "key.weight"), weight(a, "key.bias"), d, kk);
    ref64_linear(x, n, d, weight(a, "value.weight"), weight(a, "value.bias"), d, v);
  }
  for (size_t h = 0; h < cfg.num_heads; h++) {
    const size_t off = h * hd;
    for (size_t i = 0; i < n; i++) {
      for (size_t p = 0; p < n; p++) {
        double dot = 0.0;
        for (size_t c = 0; c < hd; c++) dot += q[i * d + off + c] * kk[p * d + off + c];
        s[p] = dot * scale;
        w[p] = 0.0;
      }
      double *o = ctx + i * d + off;
      if (cfg.mode == POSE_MODE_HIERARCHICAL) {
        /* Each level's partial (lse_l, out_l), merged by log-sum-exp. */
        double lse_l[64], *outs = test_alloc_f64(cfg.levels * hd);
        for (size_t l = 0; l < cfg.levels; l++) {
          const size_t st = level_skip(k, l, n);
          double mx = -INFINITY, sum = 0.0;
          for (size_t p = 0; p < n; p += st) {
            if (!(cfg.causal && p > i) && s[p] > mx) mx = s[p];
          }
          for (size_t c = 0; c < hd; c++) acc[c] = 0.0;
          for (size_t p = 0; p < n; p += st) {
            if (cfg.causal && p > i) continue;
            double e = exp(s[p] - mx);
            sum += e;
            for (size_t c = 0; c < hd; c++) acc[c] += e * v[p * d + off + c];
          }
          lse_l[l] = mx + log(sum);
          for (size_t c = 0; c < hd; c++) outs[l * hd + c] = acc[c] / sum;
        }
        double mx = -INFINITY, tot = 0.0;
        for (size_t l = 0; l < cfg.levels; l++) mx = lse_l[l] > mx ? lse_l[l] : mx;
        for (size_t l = 0; l < cfg.levels; l++) tot += exp(lse_l[l] - mx);
        const double lse = mx + log(tot);
        for (size_t c = 0; c < hd; c++) o[c] = 0.0;
        for (size_t l = 0; l < cfg.levels; l++) {
          const double f = exp(lse_l[l] - lse);
          for (size_t c = 0; c < hd; c++) o[c] += f * outs[l * hd + c];
          const size_t st = level_skip(k, l, n);
          for (size_t p = 0; p < n; p += st) {
            if (!(cfg.causal && p > i)) w[p] += exp(s[p] - lse);
          }
        }
        free(outs);
      } else {
        if (i % QBLOCK == 0) {
          ref_select(q, kk, d, off, hd, n, i, cfg.causal, cfg.top_m, k, scale, chosen);
        }
        double mx = -INFINITY, sum = 0.0;
        for (size_t p = 0; p < n; p++) {
          if (chosen[p] && !(cfg.causal && p > i) && s[p] > mx) mx = s[p];
        }
        for (size_t c = 0; c < hd; c++) o[c] = 0.0;
        for (size_t p = 0; p < n; p++) {
          if (chosen[p] && !(cfg.causal && p > i)) {
            w[p] = exp(s[p] - mx);
            sum += w[p];
          }
        }
        for (size_t p = 0; p < n && sum > 0.0; p++) {
          w[p] /= sum;
          for (size_t c = 0; c < hd; c++) o[c] += w[p] * v[p * d + off + c];
        }
      }
      if (probs != NULL && h == map_head) {
        for (size_t p = 0; p < n; p++) probs[i * n + p] = w[p];
      }
    }
  }
  if (cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    ref64_linear_d(ctx, n, d, weight(a, "proj.weight"), weight(a, "proj.bias"), d, out);
  } else {
    memcpy(out, ctx, n * d * sizeof(double));
  }
  free(q), free(kk), free(v), free(ctx), free(s), free(w), free(acc), free(chosen);
}

#define H POSE_MODE_HIERARCHICAL
#define I POSE_MODE_IMPORTANCE
#define QKV POSE_LAYOUT_QKV_PROJ
#define SEP POSE_LAYOUT_QUERY_KEY_VALUE
static const mode_case cases[] = {
    {H, 0, QKV, 8, 2, 1, 3, 3, 0},     {H, 1, SEP, 8, 2, 1, 3, 3, 0},
    {H, 0, QKV, 8, 4, 300, 2, 3, 0},   {H, 1, SEP, 8, 2, 530, 3, 4, 0},
    {H, 1, QKV, 4, 1, 600, 1, 5, 0},   {H, 0, SEP, 6, 3, 520, 2, 1, 0},
    {H, 0, SEP, 4, 2, 50, 7, 10, 0},   {H, 1, QKV, 8, 2, 257, 1, 64, 0},
    {H, 0, SEP, 4, 1, 1100, 1, 3, 0},  {I, 0, SEP, 8, 2, 1, 3, 0, 0},
    {I, 1, QKV, 8, 2, 1, 3, 0, 0},     {I, 0, QKV, 8, 2, 300, 4, 0, 0},
    {I, 1, SEP, 8, 4, 530, 5, 0, 0},   {I, 0, SEP, 4, 1, 600, 3, 50, 0},
    {I, 1, QKV, 4, 2, 513, 2, 0, 700}, {I, 0, SEP, 4, 2, 257, 1, 0, 2000},
    {I, 1, SEP, 8, 2, 600, 1, 0, 1},   {I, 1, QKV, 8, 2, 1100, 7, 0, 0},
};
#define NCASES (sizeof cases / sizeof cases[0])

static void module_matches_reference(void **state) {
  (void)state;
  for (size_t c = 0; c < NCASES; c++) {
    pose_attention_config cfg = config_of(&cases[c]);
    pose_attention_module *a = NULL;
    assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
    const size_t n = cases[c].n, cnt = n * cfg.dim;
    float *x = test_alloc_f32(cnt), *out = test_alloc_f32(cnt);
    double *ref = test_alloc_f64(cnt);
    fill_uniform(x, cnt, 1000 + c, -1, 1);
    assert_int_equal(pose_attention_forward(a, x, 1, n, NULL, out, cnt), POSE_OK);
    for (size_t i = 0; i < cnt; i++) assert_true(out[i] == out[i]);
    ref_new(a, x, n, ref, 0, NULL);
    char what[96];
    snprintf(what, sizeof what, "case %zu (%s, causal %d, n %zu)", c,
             pose_attention_mode_string(cfg.mode), cfg.causal, n);
    assert_close_f64ref(out, ref, cnt, 3e-5, 3e-5, what);
    free(x), free(out), free(ref);
    pose_attention_free(a);
  }
}

/* levels 1 is strided attention; importance with top_m >= seq_len is full attention. */
static void degenerate_cases_match_old_modes(void **state) {
  (void)state;
  static const size_t picks[] = {5, 14, 15};
  for (size_t t = 0; t < 3; t++) {
    pose_attention_config cfg = config_of(&cases[picks[t]]), old = cfg;
    old.mode = cfg.mode == H ? POSE_MODE_STRIDED : POSE_MODE_FULL;
    pose_attention_module *a = NULL, *b = NULL;
    assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
    assert_int_equal(pose_attention_create(&old, &b), POSE_OK);
    const size_t n = cases[picks[t]].n, cnt = n * cfg.dim;
    float *x = test_alloc_f32(cnt), *o1 = test_alloc_f32(cnt), *o2 = test_alloc_f32(cnt);
    fill_uniform(x, cnt, 1500 + t, -1, 1);
    assert_int_equal(pose_attention_forward(a, x, 1, n, NULL, o1, cnt), POSE_OK);
    assert_int_equal(pose_attention_forward(b, x, 1, n, NULL, o2, cnt), POSE_OK);
    assert_close_f32_tol(o1, o2, cnt, 1e-5, 1e-5, "degenerate mode vs old mode");
    free(x), free(o1), free(o2);
    pose_attention_free(a), pose_attention_free(b);
  }
}

static void padded_and_threads_bitwise(void **state) {
  (void)state;
  static const size_t picks[] = {2, 3, 4, 8, 11, 12, 16, 17};
  for (size_t t = 0; t < sizeof picks / sizeof picks[0]; t++) {
    const mode_case *mc = &cases[picks[t]];
    pose_attention_config cfg = config_of(mc);
    assert_padded_and_threads_bitwise(&cfg, mc->n, 2000 + t);
  }
}

/* Causal importance with top_m 1: rows before the one selected key attend nothing and give
 * exact zeros (query/key/value layout: no output projection), never NaN. */
static void causal_importance_empty_rows_are_zero(void **state) {
  (void)state;
  const mode_case mc = {I, 1, SEP, 8, 2, 40, 1, 0, 1};
  pose_attention_config cfg = config_of(&mc);
  pose_attention_module *a = NULL;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
  const size_t n = mc.n, d = cfg.dim;
  float *x = test_alloc_f32(n * d), *out = test_alloc_f32(n * d), *probs = test_alloc_f32(n * n);
  size_t *pos = calloc(n, sizeof *pos);
  size_t first = 0;
  for (uint64_t seed = 0; seed < 50 && first == 0; seed++) {
    fill_uniform(x, n * d, 7000 + seed, -1, 1);
    assert_int_equal(pose_attention_map(a, x, n, 0, probs, n * n, pos, n), POSE_OK);
    for (size_t p = 0; p < n; p++) {
      if (probs[(n - 1) * n + p] != 0.0f) first = p; /* the single selected key */
    }
  }
  assert_true(first > 0);
  assert_int_equal(pose_attention_forward(a, x, 1, n, NULL, out, n * d), POSE_OK);
  for (size_t i = 0; i < n * d; i++) assert_true(out[i] == out[i]);
  for (size_t i = 0; i < first; i++) {
    for (size_t c = 0; c < d / 2; c++) assert_true(out[i * d + c] == 0.0f); /* head 0 */
    for (size_t p = 0; p < n; p++) assert_true(probs[i * n + p] == 0.0f);
  }
  free(x), free(out), free(probs), free(pos);
  pose_attention_free(a);
}

static void cost_matches_brute_force(void **state) {
  (void)state;
  for (size_t c = 0; c < NCASES; c++) {
    pose_attention_config cfg = config_of(&cases[c]);
    const size_t n = cases[c].n, batch = 2, k = cfg.skip_factor;
    uint64_t pairs = 0;
    if (cfg.mode == H) {
      for (size_t l = 0; l < cfg.levels; l++) {
        const size_t st = level_skip(k, l, n);
        for (size_t i = 0; i < n; i++) {
          for (size_t p = 0; p < n; p += st) pairs += !(cfg.causal && p > i);
        }
      }
    } else {
      size_t m = cfg.top_m ? cfg.top_m : (n + k - 1) / k;
      pairs = (uint64_t)n * (m < n ? m : n); /* causal: the upper bound */
    }
    pose_cost cost;
    assert_int_equal(pose_attention_cost(&cfg, batch, n, &cost), POSE_OK);
    assert_int_equal(cost.attended_pairs, batch * cfg.num_heads * pairs);
    assert_int_equal(cost.keys_per_query, (pairs + n - 1) / n);
    assert_int_equal(cost.skip_factor, k);
    double d = (double)cfg.dim, nd = (double)n;
    double kv = cfg.mode == I ? nd : (double)((n + k - 1) / k);
    double proj = 2.0 * batch * nd * d * d + 4.0 * batch * kv * d * d;
    if (cfg.layout == QKV) proj += 2.0 * batch * nd * d * d;
    assert_true(cost.projection_flops == proj);
  }
}

static void maps_match_reference(void **state) {
  (void)state;
  static const size_t picks[] = {1, 2, 3, 6, 11, 12, 16};
  for (size_t t = 0; t < sizeof picks / sizeof picks[0]; t++) {
    pose_attention_config cfg = config_of(&cases[picks[t]]);
    pose_attention_module *a = NULL;
    assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
    const size_t n = cases[picks[t]].n, d = cfg.dim, head = cfg.num_heads - 1;
    const size_t skip = cfg.mode == H ? cfg.skip_factor : 1, nk = (n + skip - 1) / skip;
    size_t got = 0;
    assert_int_equal(pose_attention_map_size(a, n, &got), POSE_OK);
    assert_int_equal(got, nk);
    float *x = test_alloc_f32(n * d), *probs = test_alloc_f32(n * nk);
    size_t *pos = calloc(nk, sizeof *pos);
    double *ref = test_alloc_f64(n * d), *rp = test_alloc_f64(n * n),
           *want = test_alloc_f64(n * nk);
    fill_uniform(x, n * d, 5000 + t, -1, 1);
    assert_int_equal(pose_attention_map(a, x, n, head, probs, n * nk, pos, nk), POSE_OK);
    ref_new(a, x, n, ref, head, rp);
    for (size_t j = 0; j < nk; j++) assert_int_equal(pos[j], j * skip);
    for (size_t i = 0; i < n; i++) {
      for (size_t j = 0; j < nk; j++) {
        want[i * nk + j] = rp[i * n + j * skip];
        if (want[i * nk + j] == 0.0) assert_true(probs[i * nk + j] == 0.0f);
      }
    }
    assert_close_f64ref(probs, want, n * nk, 2e-5, 2e-5, "attention map");
    free(x), free(probs), free(pos), free(ref), free(rp), free(want);
    pose_attention_free(a);
  }
}

static void config_errors_and_names(void **state) {
  (void)state;
  assert_string_equal(pose_attention_mode_string(H), "hierarchical");
  assert_string_equal(pose_attention_mode_string(I), "importance");
  assert_null(pose_attention_mode_string((pose_attention_mode)6));
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  assert_int_equal(cfg.levels, 0);
  assert_int_equal(cfg.top_m, 0);
  pose_attention_module *a = NULL;
  cfg.mode = H;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  assert_null(a);
  CONTAINS("levels is 0");
  cfg.levels = 65;
  pose_cost cost;
  assert_int_equal(pose_attention_cost(&cfg, 1, 4, &cost), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("levels is 65");
  cfg.levels = 2;
  cfg.skip_factor = 0;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("skip_factor is 0");
  cfg.mode = I;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("skip_factor is 0");
  cfg.mode = (pose_attention_mode)6;
  cfg.skip_factor = 2;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("mode 6");
  /* An older caller's struct (up to causal) reads levels and top_m as 0. */
  pose_attention_config old;
  pose_attention_config_init(&old);
  old.levels = 5, old.top_m = 9; /* past struct_size: never read */
  old.struct_size = offsetof(pose_attention_config, causal) + sizeof(int);
  assert_int_equal(pose_attention_create(&old, &a), POSE_OK);
  pose_attention_config back;
  pose_attention_config_init(&back);
  assert_int_equal(pose_attention_get_config(a, &back), POSE_OK);
  assert_int_equal(back.levels, 0);
  assert_int_equal(back.top_m, 0);
  pose_attention_free(a);
  pose_model_config mc;
  pose_model_config_init(&mc, POSE_MODEL_LAYER);
  pose_model *m = NULL;
  mc.mode = H;
  assert_int_equal(pose_model_create(&mc, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("levels");
  assert_null(m);
}

static void models_save_and_load(void **state) {
  (void)state;
  struct {
    pose_attention_mode mode;
    int causal;
    size_t skip, levels, top_m;
  } ecs[] = {{H, 0, 2, 3, 0}, {H, 1, 3, 2, 0}, {I, 0, 4, 0, 0}, {I, 1, 2, 0, 9}};
  const size_t n = 300, d = 16;
  for (size_t t = 0; t < 4; t++) {
    pose_model_config c;
    assert_int_equal(pose_model_config_init(&c, POSE_MODEL_ENCODER), POSE_OK);
    c.dim = d, c.ff_dim = 32, c.num_layers = 2, c.num_heads = 2;
    c.mode = ecs[t].mode, c.causal = ecs[t].causal, c.skip_factor = ecs[t].skip;
    c.levels = ecs[t].levels, c.top_m = ecs[t].top_m, c.seed = 21 + t;
    pose_model *e = NULL;
    assert_int_equal(pose_model_create(&c, &e), POSE_OK);
    pose_layer_info info = {.struct_size = sizeof info};
    assert_int_equal(pose_model_layer_info(e, 1, &info), POSE_OK);
    assert_int_equal(info.mode, c.mode);
    assert_int_equal(info.levels, c.levels);
    assert_int_equal(info.top_m, c.top_m);
    assert_int_equal(info.causal, c.causal);
    float *x = test_alloc_f32(n * d), *out = test_alloc_f32(n * d), *o2 = test_alloc_f32(n * d);
    fill_uniform(x, n * d, 6000 + t, -1, 1);
    assert_int_equal(pose_model_forward(e, x, 1, n, NULL, out, n * d), POSE_OK);
    size_t nk = 0;
    assert_int_equal(pose_model_attention_map_size(e, 1, n, &nk), POSE_OK);
    float *probs = test_alloc_f32(n * nk);
    size_t *pos = calloc(nk, sizeof *pos);
    assert_int_equal(pose_model_attention_map(e, 1, x, NULL, n, 1, probs, n * nk, pos, nk),
                     POSE_OK);
    for (size_t i = 0; i < n * nk; i++) assert_true(probs[i] >= 0.0f && probs[i] <= 1.0f);
    char *path = test_tmp_path("modes2.safetensors");
    assert_int_equal(pose_model_save(e, path), POSE_OK);
    pose_model *back = NULL;
    assert_int_equal(pose_model_load(path, NULL, &back), POSE_OK);
    pose_model_config bc = {.struct_size = sizeof bc};
    assert_int_equal(pose_model_get_config(back, &bc), POSE_OK);
    assert_int_equal(bc.mode, c.mode);
    assert_int_equal(bc.causal, c.causal);
    assert_int_equal(bc.levels, c.levels);
    assert_int_equal(bc.top_m, c.top_m);
    assert_int_equal(bc.skip_factor, c.skip_factor);
    assert_int_equal(pose_model_forward(back, x, 1, n, NULL, o2, n * d), POSE_OK);
    assert_memory_equal(out, o2, n * d * sizeof(float));
    remove(path);
    free(path);
    pose_model_free(back), pose_model_free(e);
    free(x), free(out), free(o2), free(probs), free(pos);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(module_matches_reference),
      cmocka_unit_test(degenerate_cases_match_old_modes),
      cmocka_unit_test(padded_and_threads_bitwise),
      cmocka_unit_test(causal_importance_empty_rows_are_zero),
      cmocka_unit_test(cost_matches_brute_force),
      cmocka_unit_test(maps_match_reference),
      cmocka_unit_test(config_errors_and_names),
      cmocka_unit_test(models_save_and_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
