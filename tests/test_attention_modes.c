/* Causal attention (every mode) and POSE_MODE_LOCAL_STRIDED: the module against a float64
 * reference that applies each mode's mask to full attention, tile edges, padding and thread
 * counts (bitwise), the cost counts, attention maps, models (encoder = chain of layers, layer =
 * attention module + post-LN feed-forward, save/load) and the error paths. */
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

typedef struct mode_case {
  pose_attention_mode mode;
  int causal;
  pose_attention_layout layout;
  size_t dim, heads, n, skip, window, max_seq_len, num_global;
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
  cfg.window = c->window;
  cfg.num_global = c->num_global;
  cfg.max_seq_len = c->max_seq_len ? c->max_seq_len : 1000;
  cfg.qkv_bias = 1;
  cfg.seed = 7 + c->n;
  return cfg;
}

/* True when query i attends position p under cfg for a sequence of n positions. */
static int ref_allowed(const pose_attention_config *cfg, size_t n, size_t i, size_t p) {
  if (cfg->causal && p > i) return 0;
  size_t k = ref64_skip_for(cfg->mode, cfg->skip_factor, cfg->max_seq_len, n);
  switch (cfg->mode) {
    case POSE_MODE_FULL: return 1;
    case POSE_MODE_STRIDED:
    case POSE_MODE_ADAPTIVE: return p % k == 0;
    case POSE_MODE_LOCAL_STRIDED:
      return p % k == 0 || p < cfg->num_global || (p <= i ? i - p : p - i) <= cfg->window;
    case POSE_MODE_HIERARCHICAL:
    case POSE_MODE_IMPORTANCE: return 0; /* tested in test_attention_modes2.c */
  }
  return 0;
}

static const float *weight(const pose_attention_module *a, const char *name) {
  const float *data;
  size_t count;
  assert_int_equal(pose_attention_get_weight(a, name, &data, &count), POSE_OK);
  return data;
}

/* The float64 reference of one sequence x[n, dim]: Q/K/V at every position, every score, the
 * mode's mask, softmax, weighted sum (and proj for the fused layout). probs (optional) receives
 * head `map_head`'s weights [n, n]. */
static void ref_masked(const pose_attention_module *a, const float *x, size_t n, double *out,
                       size_t map_head, double *probs) {
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  assert_int_equal(pose_attention_get_config(a, &cfg), POSE_OK);
  const size_t d = cfg.dim, hd = d / cfg.num_heads;
  const double scale = 1.0 / sqrt((double)hd);
  double *q = test_alloc_f64(n * d), *k = test_alloc_f64(n * d), *v = test_alloc_f64(n * d);
  double *ctx = test_alloc_f64(n * d), *s = test_alloc_f64(n);
  if (cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    const float *w = weight(a, "qkv.weight"), *b = weight(a, "qkv.bias");
    ref64_linear(x, n, d, w, b, d, q);
    ref64_linear(x, n, d, w + d * d, b + d, d, k);
    ref64_linear(x, n, d, w + 2 * d * d, b + 2 * d, d, v);
  } else {
    ref64_linear(x, n, d, weight(a, "query.weight"), weight(a, "query.bias"), d, q);
    ref64_linear(x, n, d, weight(a, "key.weight"), weight(a, "key.bias"), d, k);
    ref64_linear(x, n, d, weight(a, "value.weight"), weight(a, "value.bias"), d, v);
  }
  for (size_t h = 0; h < cfg.num_heads; h++) {
    const size_t off = h * hd;
    for (size_t i = 0; i < n; i++) {
      double mx = -INFINITY, sum = 0.0;
      for (size_t p = 0; p < n; p++) {
        double dot = 0.0;
        for (size_t c = 0; c < hd; c++) dot += q[i * d + off + c] * k[p * d + off + c];
        s[p] = ref_allowed(&cfg, n, i, p) ? dot * scale : -INFINITY;
        if (s[p] > mx) mx = s[p];
      }
      for (size_t p = 0; p < n; p++) {
        s[p] = s[p] == -INFINITY ? 0.0 : exp(s[p] - mx);
        sum += s[p];
      }
      for (size_t c = 0; c < hd; c++) {
        double acc = 0.0;
        for (size_t p = 0; p < n; p++) acc += s[p] * v[p * d + off + c];
        ctx[i * d + off + c] = acc / sum;
      }
      if (probs != NULL && h == map_head) {
        for (size_t p = 0; p < n; p++) probs[i * n + p] = s[p] / sum;
      }
    }
  }
  if (cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    ref64_linear_d(ctx, n, d, weight(a, "proj.weight"), weight(a, "proj.bias"), d, out);
  } else {
    memcpy(out, ctx, n * d * sizeof(double));
  }
  free(q), free(k), free(v), free(ctx), free(s);
}

static const mode_case cases[] = {
    {POSE_MODE_FULL, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 2, 1, 1, 0, 0, 0},
    {POSE_MODE_FULL, 1, POSE_LAYOUT_QKV_PROJ, 8, 4, 300, 1, 0, 0, 0},
    {POSE_MODE_FULL, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 1, 600, 1, 0, 0, 0},
    {POSE_MODE_STRIDED, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 6, 3, 77, 3, 0, 0, 0},
    {POSE_MODE_STRIDED, 1, POSE_LAYOUT_QKV_PROJ, 8, 2, 530, 5, 0, 0, 0},
    {POSE_MODE_ADAPTIVE, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 2, 123, 0, 0, 100, 0},
    {POSE_MODE_ADAPTIVE, 1, POSE_LAYOUT_QKV_PROJ, 4, 1, 5, 0, 0, 20, 0},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 2, 1, 3, 1, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 2, 1, 3, 1, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 2, 37, 4, 1, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QKV_PROJ, 8, 2, 37, 4, 1, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QKV_PROJ, 8, 2, 600, 7, 3, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 4, 600, 7, 3, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 1, 300, 2, 600, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QKV_PROJ, 4, 2, 300, 2, 300, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 1, 700, 16, 300, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QKV_PROJ, 4, 1, 700, 16, 300, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 2, 50, 1000, 2, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 2, 50, 1, 2, 0, 0},
    /* Windows that cover all but the far end of the strided keys: the strided pass may skip
     * a tile only when every row's window holds it. */
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 1, 200, 4, 197, 0, 0},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QKV_PROJ, 4, 2, 520, 3, 258, 0, 0},
    /* 21..: global positions 0..num_global-1 (1, 3, >= seq_len), with and without causal,
     * both layouts, lengths past the 256-query block and the 512-key tile, skip 1 (every
     * global already strided) and a window that holds most of them. */
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QKV_PROJ, 8, 2, 37, 4, 1, 0, 1},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 2, 37, 4, 1, 0, 1},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 8, 2, 50, 5, 2, 0, 3},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QKV_PROJ, 8, 2, 50, 5, 2, 0, 3},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QKV_PROJ, 4, 1, 60, 7, 1, 0, 60},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 2, 60, 7, 1, 0, 100},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 2, 600, 16, 3, 0, 3},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QKV_PROJ, 4, 1, 600, 16, 3, 0, 300},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QKV_PROJ, 4, 1, 700, 16, 2, 0, 600},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 2, 300, 1, 2, 0, 3},
    {POSE_MODE_LOCAL_STRIDED, 0, POSE_LAYOUT_QUERY_KEY_VALUE, 4, 1, 200, 4, 197, 0, 10},
    {POSE_MODE_LOCAL_STRIDED, 1, POSE_LAYOUT_QKV_PROJ, 4, 1, 270, 9, 2, 0, 1000},
};
#define NCASES (sizeof cases / sizeof cases[0])

static void module_matches_masked_reference(void **state) {
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
    ref_masked(a, x, n, ref, 0, NULL);
    char what[96];
    snprintf(what, sizeof what, "case %zu (%s, causal %d, n %zu, global %zu)", c,
             pose_attention_mode_string(cfg.mode), cfg.causal, n, cfg.num_global);
    assert_close_f64ref(out, ref, cnt, 3e-5, 3e-5, what);
    free(x), free(out), free(ref);
    pose_attention_free(a);
  }
}

/* Each sequence of a padded batch equals running it alone, bitwise, and the batch is the same
 * bits on 1 and 3 threads. */
static void padded_and_threads_bitwise(void **state) {
  (void)state;
  static const size_t picks[] = {2, 4, 5, 11, 12, 15, 16, 24, 27, 28, 29, 32};
  for (size_t t = 0; t < sizeof picks / sizeof picks[0]; t++) {
    const mode_case *mc = &cases[picks[t]];
    pose_attention_config cfg = config_of(mc);
    assert_padded_and_threads_bitwise(&cfg, mc->n, 2000 + t);
  }
}

/* Causal rows never see the future: changing the input past a position leaves every output up
 * to it unchanged (bitwise). */
static void causal_ignores_the_future(void **state) {
  (void)state;
  static const size_t picks[] = {2, 4, 12, 24, 28};
  for (size_t t = 0; t < sizeof picks / sizeof picks[0]; t++) {
    const mode_case *mc = &cases[picks[t]];
    pose_attention_config cfg = config_of(mc);
    pose_attention_module *a = NULL;
    assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
    const size_t n = mc->n, d = cfg.dim, cut = n / 2;
    float *x = test_alloc_f32(n * d), *o1 = test_alloc_f32(n * d), *o2 = test_alloc_f32(n * d);
    fill_uniform(x, n * d, 3000 + t, -1, 1);
    assert_int_equal(pose_attention_forward(a, x, 1, n, NULL, o1, n * d), POSE_OK);
    fill_uniform(x + (cut + 1) * d, (n - cut - 1) * d, 4000 + t, -5, 5);
    assert_int_equal(pose_attention_forward(a, x, 1, n, NULL, o2, n * d), POSE_OK);
    if (cfg.mode != POSE_MODE_ADAPTIVE) {
      assert_memory_equal(o1, o2, (cut + 1) * d * sizeof(float));
    }
    free(x), free(o1), free(o2);
    pose_attention_free(a);
  }
}

static void cost_counts_the_union(void **state) {
  (void)state;
  for (size_t c = 0; c < NCASES; c++) {
    pose_attention_config cfg = config_of(&cases[c]);
    const size_t n = cases[c].n, batch = 2;
    uint64_t pairs = 0;
    for (size_t i = 0; i < n; i++) {
      for (size_t p = 0; p < n; p++) pairs += (uint64_t)ref_allowed(&cfg, n, i, p);
    }
    pose_cost cost;
    assert_int_equal(pose_attention_cost(&cfg, batch, n, &cost), POSE_OK);
    assert_int_equal(cost.attended_pairs, batch * cfg.num_heads * pairs);
    assert_int_equal(cost.keys_per_query, (pairs + n - 1) / n);
    assert_true(cost.attention_flops ==
                4.0 * (double)cost.attended_pairs * (double)(cfg.dim / cfg.num_heads));
    double d = (double)cfg.dim, nd = (double)n;
    double kv = cfg.mode == POSE_MODE_LOCAL_STRIDED
                    ? nd
                    : (double)((n + cost.skip_factor - 1) / cost.skip_factor);
    double proj = 2.0 * batch * nd * d * d + 4.0 * batch * kv * d * d;
    if (cfg.layout == POSE_LAYOUT_QKV_PROJ) proj += 2.0 * batch * nd * d * d;
    assert_true(cost.projection_flops == proj);
  }
  /* Non-causal strided is unchanged: ceil(n / k) per query. */
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.skip_factor = 3;
  pose_cost cost;
  assert_int_equal(pose_attention_cost(&cfg, 1, 10, &cost), POSE_OK);
  assert_int_equal(cost.keys_per_query, 4);
  assert_int_equal(cost.attended_pairs, 40);
}

static void maps_mask_like_the_forward(void **state) {
  (void)state;
  static const size_t picks[] = {3, 10, 13, 17, 18, 21, 22, 25, 26, 28, 30};
  for (size_t t = 0; t < sizeof picks / sizeof picks[0]; t++) {
    pose_attention_config cfg = config_of(&cases[picks[t]]);
    pose_attention_module *a = NULL;
    assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
    const size_t n = cases[picks[t]].n, d = cfg.dim, head = cfg.num_heads - 1;
    size_t nk = 0;
    assert_int_equal(pose_attention_map_size(a, n, &nk), POSE_OK);
    size_t skip = 1;
    if (cfg.mode != POSE_MODE_LOCAL_STRIDED) {
      assert_int_equal(pose_attention_skip_for(a, n, &skip), POSE_OK);
    }
    assert_int_equal(nk, (n + skip - 1) / skip);
    float *x = test_alloc_f32(n * d), *probs = test_alloc_f32(n * nk);
    size_t *pos = calloc(nk, sizeof *pos);
    double *ref = test_alloc_f64(n * d), *rp = test_alloc_f64(n * n),
           *want = test_alloc_f64(n * nk);
    fill_uniform(x, n * d, 5000 + t, -1, 1);
    assert_int_equal(pose_attention_map(a, x, n, head, probs, n * nk, pos, nk), POSE_OK);
    ref_masked(a, x, n, ref, head, rp);
    for (size_t j = 0; j < nk; j++) assert_int_equal(pos[j], j * skip);
    for (size_t i = 0; i < n; i++) {
      for (size_t j = 0; j < nk; j++) want[i * nk + j] = rp[i * n + j * skip];
      for (size_t j = 0; j < nk; j++) {
        if (!ref_allowed(&cfg, n, i, j * skip)) assert_true(probs[i * nk + j] == 0.0f);
      }
    }
    assert_close_f64ref(probs, want, n * nk, 2e-5, 2e-5, "attention map");
    free(x), free(probs), free(pos), free(ref), free(rp), free(want);
    pose_attention_free(a);
  }
}

static void config_errors_and_names(void **state) {
  (void)state;
  assert_string_equal(pose_attention_mode_string(POSE_MODE_LOCAL_STRIDED), "local_strided");
  assert_null(pose_attention_mode_string((pose_attention_mode)6));
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  assert_int_equal(cfg.causal, 0);
  assert_int_equal(cfg.window, 0);
  pose_attention_module *a = NULL;
  cfg.mode = POSE_MODE_LOCAL_STRIDED;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  assert_null(a);
  CONTAINS("window is 0");
  cfg.window = 2;
  cfg.skip_factor = 0;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("skip_factor is 0");
  cfg.skip_factor = 2;
  cfg.causal = 2;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("causal is 2");
  cfg.causal = -1;
  pose_cost cost;
  assert_int_equal(pose_attention_cost(&cfg, 1, 4, &cost), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("causal is -1");
  /* Global positions are local_strided only. */
  cfg.causal = 0;
  cfg.num_global = 2;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
  pose_attention_free(a);
  a = NULL;
  cfg.mode = POSE_MODE_STRIDED;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_ERR_INVALID_ARGUMENT);
  assert_null(a);
  CONTAINS("num_global is 2");
  cfg.mode = POSE_MODE_FULL;
  assert_int_equal(pose_attention_cost(&cfg, 1, 4, &cost), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("num_global is 2");
  /* An older caller's struct (up to seed) reads window and causal as 0. */
  pose_attention_config old;
  pose_attention_config_init(&old);
  old.causal = 5, old.window = 9, old.num_global = 4; /* past struct_size: never read */
  old.struct_size = offsetof(pose_attention_config, seed) + sizeof(uint64_t);
  assert_int_equal(pose_attention_create(&old, &a), POSE_OK);
  pose_attention_config got;
  pose_attention_config_init(&got);
  assert_int_equal(pose_attention_get_config(a, &got), POSE_OK);
  assert_int_equal(got.causal, 0);
  assert_int_equal(got.window, 0);
  assert_int_equal(got.num_global, 0);
  pose_attention_free(a);
  /* Models check the same fields. */
  pose_model_config mc;
  pose_model_config_init(&mc, POSE_MODEL_LAYER);
  pose_model *m = NULL;
  mc.mode = POSE_MODE_LOCAL_STRIDED;
  assert_int_equal(pose_model_create(&mc, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("window is 0");
  mc.window = 1;
  mc.causal = 3;
  assert_int_equal(pose_model_create(&mc, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("causal is 3");
  assert_null(m);
  mc.causal = 0;
  mc.mode = POSE_MODE_HIERARCHICAL;
  mc.levels = 2;
  mc.num_global = 1;
  assert_int_equal(pose_model_create(&mc, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("num_global");
  assert_null(m);
}

/* ---- models -------------------------------------------------------------------------------- */

static const float *mweight(const pose_model *m, const char *name) {
  const float *data;
  size_t count;
  assert_int_equal(pose_model_get_weight(m, name, &data, &count), POSE_OK);
  return data;
}

/* A POSE_MODEL_LAYER with the weights of layer `index` of encoder e. */
static pose_model *layer_of(const pose_model *e, size_t index) {
  pose_model_config ec = {.struct_size = sizeof ec};
  assert_int_equal(pose_model_get_config(e, &ec), POSE_OK);
  pose_model_config lc = ec;
  lc.kind = POSE_MODEL_LAYER;
  lc.num_layers = 1;
  static const char *names[] = {"attn.query.weight", "attn.query.bias",   "attn.key.weight",
                                "attn.key.bias",     "attn.value.weight", "attn.value.bias",
                                "ff.0.weight",       "ff.0.bias",         "ff.2.weight",
                                "ff.2.bias",         "norm1.weight",      "norm1.bias",
                                "norm2.weight",      "norm2.bias"};
  pose_weight w[14];
  char full[14][64];
  for (size_t i = 0; i < 14; i++) {
    snprintf(full[i], sizeof full[i], "layers.%zu.%s", index, names[i]);
    const float *data;
    size_t count;
    assert_int_equal(pose_model_get_weight(e, full[i], &data, &count), POSE_OK);
    w[i] = (pose_weight){names[i], data, count};
  }
  pose_model *l = NULL;
  assert_int_equal(pose_model_create_from_weights(&lc, w, 14, &l), POSE_OK);
  return l;
}

/* out = layer(x) from the attention module with the layer's weights, then the post-LN
 * feed-forward in float64. */
static void ref_layer(const pose_model *l, const float *x, size_t n, double *out) {
  pose_model_config c = {.struct_size = sizeof c};
  assert_int_equal(pose_model_get_config(l, &c), POSE_OK);
  const size_t d = c.dim, f = c.ff_dim;
  pose_attention_config ac;
  pose_attention_config_init(&ac);
  ac.mode = c.mode, ac.dim = d, ac.num_heads = c.num_heads, ac.skip_factor = c.skip_factor;
  ac.max_seq_len = c.max_seq_len, ac.window = c.window, ac.causal = c.causal;
  ac.num_global = c.num_global;
  const char *an[] = {"query.weight", "query.bias",   "key.weight",
                      "key.bias",     "value.weight", "value.bias"};
  pose_weight w[6];
  char full[6][32];
  for (size_t i = 0; i < 6; i++) {
    snprintf(full[i], sizeof full[i], "attn.%s", an[i]);
    const float *data;
    size_t count;
    assert_int_equal(pose_model_get_weight(l, full[i], &data, &count), POSE_OK);
    w[i] = (pose_weight){an[i], data, count};
  }
  pose_attention_module *a = NULL;
  assert_int_equal(pose_attention_create_from_weights(&ac, w, 6, &a), POSE_OK);
  float *att = test_alloc_f32(n * d);
  assert_int_equal(pose_attention_forward(a, x, 1, n, NULL, att, n * d), POSE_OK);
  double *y = test_alloc_f64(n * d), *h = test_alloc_f64(n * f), *z = test_alloc_f64(n * d);
  for (size_t i = 0; i < n * d; i++) y[i] = (double)x[i] + (double)att[i];
  ref64_layer_norm_d(y, n, d, mweight(l, "norm1.weight"), mweight(l, "norm1.bias"),
                     c.layer_norm_eps, y);
  ref64_linear_d(y, n, d, mweight(l, "ff.0.weight"), mweight(l, "ff.0.bias"), f, h);
  ref64_relu_d(h, n * f, h);
  ref64_linear_d(h, n, f, mweight(l, "ff.2.weight"), mweight(l, "ff.2.bias"), d, z);
  for (size_t i = 0; i < n * d; i++) z[i] += y[i];
  ref64_layer_norm_d(z, n, d, mweight(l, "norm2.weight"), mweight(l, "norm2.bias"),
                     c.layer_norm_eps, out);
  free(att), free(y), free(h), free(z);
  pose_attention_free(a);
}

static void encoders_with_new_modes(void **state) {
  (void)state;
  struct {
    pose_attention_mode mode;
    int causal;
    size_t skip, window, num_global;
  } ecs[] = {{POSE_MODE_STRIDED, 1, 3, 0, 0},       {POSE_MODE_FULL, 1, 1, 0, 0},
             {POSE_MODE_LOCAL_STRIDED, 0, 5, 2, 0}, {POSE_MODE_LOCAL_STRIDED, 1, 4, 3, 0},
             {POSE_MODE_LOCAL_STRIDED, 0, 5, 2, 3}, {POSE_MODE_LOCAL_STRIDED, 1, 4, 3, 1},
             {POSE_MODE_LOCAL_STRIDED, 0, 9, 1, 80}};
  const size_t n = 70, d = 16;
  for (size_t t = 0; t < sizeof ecs / sizeof ecs[0]; t++) {
    pose_model_config c;
    assert_int_equal(pose_model_config_init(&c, POSE_MODEL_ENCODER), POSE_OK);
    c.dim = d, c.ff_dim = 32, c.num_layers = 2, c.num_heads = 2;
    c.mode = ecs[t].mode, c.causal = ecs[t].causal;
    c.skip_factor = ecs[t].skip, c.window = ecs[t].window, c.seed = 11 + t;
    c.num_global = ecs[t].num_global;
    pose_model *e = NULL;
    assert_int_equal(pose_model_create(&c, &e), POSE_OK);
    pose_layer_info info = {.struct_size = sizeof info};
    assert_int_equal(pose_model_layer_info(e, 1, &info), POSE_OK);
    assert_int_equal(info.causal, c.causal);
    assert_int_equal(info.window, c.window);
    assert_int_equal(info.num_global, c.num_global);
    assert_int_equal(info.mode, c.mode);
    float *x = test_alloc_f32(n * d), *out = test_alloc_f32(n * d);
    float *mid = test_alloc_f32(n * d), *chain = test_alloc_f32(n * d);
    double *ref = test_alloc_f64(n * d);
    fill_uniform(x, n * d, 6000 + t, -1, 1);
    assert_int_equal(pose_model_forward(e, x, 1, n, NULL, out, n * d), POSE_OK);
    pose_model *l0 = layer_of(e, 0), *l1 = layer_of(e, 1);
    assert_int_equal(pose_model_forward(l0, x, 1, n, NULL, mid, n * d), POSE_OK);
    ref_layer(l0, x, n, ref);
    assert_close_f64ref(mid, ref, n * d, 1e-4, 1e-4, "layer 0 vs module + feed-forward");
    assert_int_equal(pose_model_forward(l1, mid, 1, n, NULL, chain, n * d), POSE_OK);
    assert_close_f32_tol(out, chain, n * d, 1e-5, 1e-5, "encoder vs chained layers");
    /* Save and load keep the mode, window and causality, and the outputs bitwise. */
    char *path = test_tmp_path("modes.safetensors");
    assert_int_equal(pose_model_save(e, path), POSE_OK);
    pose_model *back = NULL;
    assert_int_equal(pose_model_load(path, NULL, &back), POSE_OK);
    pose_model_config bc = {.struct_size = sizeof bc};
    assert_int_equal(pose_model_get_config(back, &bc), POSE_OK);
    assert_int_equal(bc.causal, c.causal);
    assert_int_equal(bc.window, c.window);
    assert_int_equal(bc.num_global, c.num_global);
    assert_int_equal(bc.mode, c.mode);
    assert_int_equal(pose_model_forward(back, x, 1, n, NULL, chain, n * d), POSE_OK);
    assert_memory_equal(out, chain, n * d * sizeof(float));
    remove(path);
    free(path);
    pose_model_free(back), pose_model_free(l0), pose_model_free(l1), pose_model_free(e);
    free(x), free(out), free(mid), free(chain), free(ref);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(module_matches_masked_reference),
      cmocka_unit_test(padded_and_threads_bitwise),
      cmocka_unit_test(causal_ignores_the_future),
      cmocka_unit_test(cost_counts_the_union),
      cmocka_unit_test(maps_mask_like_the_forward),
      cmocka_unit_test(config_errors_and_names),
      cmocka_unit_test(encoders_with_new_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
