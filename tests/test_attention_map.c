/* Attention maps (slide 12): pose_attention_map against a float64 computation for both layouts,
 * every mode and several heads; the map against what the forward computes with it; model maps
 * against the module map on the rebuilt layer input (through libpose's own layer forward and
 * through the float64 reference); every error path; and every failed allocation. */
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

/* Probabilities lie in [0, 1] and come from float32 projections: an absolute bound is the
 * natural one, with a little relative slack for the largest weights. */
#define MAP_ATOL 2e-6
#define MAP_RTOL 1e-5

/* A value no computation produces, to see that a failing call wrote nothing. */
#define SENTINEL 12345.0f

/* ---- float64 reference ---------------------------------------------------------------------- */

/* The map of head h for x[n, d] (double): Q = x Wq^T + bq for every row, K = x Wk^T + bk for
 * rows 0, skip, 2 skip, ..., scores scale * q_i . k_j over the head's columns, softmax per row.
 * wq/wk are [d, d] slices of the module's weights (for the fused layout, the first and second
 * thirds of qkv). probs [n, nk], positions [nk]; returns nk. */
static size_t ref_map_d(const double *x, size_t n, size_t d, const float *wq, const float *bq,
                        const float *wk, const float *bk, size_t heads, size_t h, double scale,
                        size_t skip, double *probs, size_t *positions) {
  const size_t hd = d / heads, nk = (n + skip - 1) / skip;
  double *q = test_alloc_f64(n * d), *kept = test_alloc_f64(nk * d), *k = test_alloc_f64(nk * d);
  ref64_linear_d(x, n, d, wq, bq, d, q);
  for (size_t j = 0; j < nk; j++) memcpy(kept + j * d, x + j * skip * d, d * sizeof(double));
  ref64_linear_d(kept, nk, d, wk, bk, d, k);
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < nk; j++) {
      double s = 0.0;
      for (size_t c = h * hd; c < (h + 1) * hd; c++) s += q[i * d + c] * k[j * d + c];
      probs[i * nk + j] = scale * s;
    }
  }
  ref64_softmax_d(probs, n, nk, probs);
  for (size_t j = 0; j < nk; j++) positions[j] = j * skip;
  free(q), free(kept), free(k);
  return nk;
}

/* The query and key weights of a module, read back through the public accessors. */
typedef struct qk_weights {
  const float *wq, *bq, *wk, *bk;
  double scale;
} qk_weights;

static qk_weights module_qk(const pose_attention_module *m) {
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  assert_int_equal(pose_attention_get_config(m, &cfg), POSE_OK);
  const size_t d = cfg.dim;
  qk_weights w = {0};
  const float *data;
  size_t count;
  if (cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    assert_int_equal(pose_attention_get_weight(m, "qkv.weight", &data, &count), POSE_OK);
    w.wq = data, w.wk = data + d * d;
    if (cfg.qkv_bias) {
      assert_int_equal(pose_attention_get_weight(m, "qkv.bias", &data, &count), POSE_OK);
      w.bq = data, w.bk = data + d;
    }
  } else {
    assert_int_equal(pose_attention_get_weight(m, "query.weight", &w.wq, &count), POSE_OK);
    assert_int_equal(pose_attention_get_weight(m, "query.bias", &w.bq, &count), POSE_OK);
    assert_int_equal(pose_attention_get_weight(m, "key.weight", &w.wk, &count), POSE_OK);
    assert_int_equal(pose_attention_get_weight(m, "key.bias", &w.bk, &count), POSE_OK);
  }
  w.scale = cfg.scale != 0.0f ? cfg.scale : 1.0 / sqrt((double)(d / cfg.num_heads));
  return w;
}

/* Checks libpose's map of every head of m on x[n, dim] (double copy xd) against the reference:
 * the size functions, the probabilities, row sums and positions. */
static void check_module_map_d(const pose_attention_module *m, const float *x, const double *xd,
                               size_t n, const char *what) {
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  assert_int_equal(pose_attention_get_config(m, &cfg), POSE_OK);
  size_t skip, nk;
  assert_int_equal(pose_attention_skip_for(m, n, &skip), POSE_OK);
  assert_int_equal(pose_attention_map_size(m, n, &nk), POSE_OK);
  assert_int_equal(nk, (n + skip - 1) / skip);
  assert_int_equal(skip, ref64_skip_for(cfg.mode, cfg.skip_factor, cfg.max_seq_len, n));
  qk_weights w = module_qk(m);
  /* One spare element past each buffer shows the map writes exactly what it says. */
  float *probs = test_alloc_f32(n * nk + 1);
  double *ref = test_alloc_f64(n * nk);
  size_t *pos = calloc(nk + 1, sizeof *pos), *ref_pos = calloc(nk, sizeof *ref_pos);
  assert_non_null(pos), assert_non_null(ref_pos);
  for (size_t h = 0; h < cfg.num_heads; h++) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: n %zu head %zu of %zu", what, n, h, cfg.num_heads);
    probs[n * nk] = SENTINEL, pos[nk] = 777;
    assert_int_equal(pose_attention_map(m, x, n, h, probs, n * nk, pos, nk), POSE_OK);
    assert_true(probs[n * nk] == SENTINEL && pos[nk] == 777);
    ref_map_d(xd, n, cfg.dim, w.wq, w.bq, w.wk, w.bk, cfg.num_heads, h, w.scale, skip, ref,
              ref_pos);
    assert_close_f64ref(probs, ref, n * nk, MAP_ATOL, MAP_RTOL, msg);
    for (size_t j = 0; j < nk; j++) assert_int_equal(pos[j], ref_pos[j]);
    for (size_t i = 0; i < n; i++) {
      double sum = 0.0;
      for (size_t j = 0; j < nk; j++) {
        assert_true(probs[i * nk + j] >= 0.0f && probs[i * nk + j] <= 1.0f);
        sum += probs[i * nk + j];
      }
      assert_true(fabs(sum - 1.0) < 1e-5);
    }
  }
  free(probs), free(ref), free(pos), free(ref_pos);
}

static void check_module_map(const pose_attention_module *m, const float *x, size_t n, size_t d,
                             const char *what) {
  double *xd = test_alloc_f64(n * d);
  to_f64(x, n * d, xd);
  check_module_map_d(m, x, xd, n, what);
  free(xd);
}

/* ---- the module ----------------------------------------------------------------------------- */

static void module_maps_match_reference(void **state) {
  (void)state;
  /* mode, skip_factor, max_seq_len, seq_len: lengths below, at and not divisible by the skip,
   * one position, a skip beyond the length (one so large that skip * dim overflows the BLAS
   * integer: with one key the stride is never used), adaptive below and above its threshold. */
  static const struct {
    pose_attention_mode mode;
    size_t k, max_len, n;
  } cases[] = {
      {POSE_MODE_FULL, 1, 1000, 1},     {POSE_MODE_FULL, 1, 1000, 13},
      {POSE_MODE_STRIDED, 3, 1000, 1},  {POSE_MODE_STRIDED, 3, 1000, 10},
      {POSE_MODE_STRIDED, 4, 1000, 16}, {POSE_MODE_STRIDED, 1, 1000, 9},
      {POSE_MODE_STRIDED, 20, 1000, 7}, {POSE_MODE_STRIDED, 5, 1000, 300},
      {POSE_MODE_ADAPTIVE, 0, 50, 4},   {POSE_MODE_ADAPTIVE, 0, 50, 23},
      {POSE_MODE_ADAPTIVE, 0, 100, 67}, {POSE_MODE_STRIDED, (size_t)1 << 40, 1000, 7},
  };
  static const size_t heads[] = {1, 2, 4};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (int layout = 0; layout < 3; layout++) {
      for (size_t hi = 0; hi < 3; hi++) {
        pose_attention_config cfg;
        pose_attention_config_init(&cfg);
        cfg.layout = layout == 2 ? POSE_LAYOUT_QUERY_KEY_VALUE : POSE_LAYOUT_QKV_PROJ;
        cfg.qkv_bias = layout == 1;
        cfg.mode = cases[c].mode;
        cfg.skip_factor = cases[c].k ? cases[c].k : 2;
        cfg.max_seq_len = cases[c].max_len;
        cfg.dim = 16;
        cfg.num_heads = heads[hi];
        cfg.seed = 1000 + c * 10 + (size_t)layout * 3 + hi;
        pose_attention_module *m = NULL;
        assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
        const size_t n = cases[c].n;
        float *x = test_alloc_f32(n * cfg.dim);
        /* Wide inputs give peaked rows, so a wrong column or scale cannot hide in a near-
         * uniform map. */
        fill_uniform(x, n * cfg.dim, 77 + c, -4.0f, 4.0f);
        char what[96];
        snprintf(what, sizeof what, "case %zu layout %d %s", c, layout,
                 pose_attention_mode_string(cfg.mode));
        check_module_map(m, x, n, cfg.dim, what);
        free(x);
        pose_attention_free(m);
      }
    }
  }
}

static void module_map_with_custom_scale(void **state) {
  (void)state;
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.dim = 12, cfg.num_heads = 3, cfg.skip_factor = 2, cfg.scale = 0.9f, cfg.seed = 5;
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
  float x[11 * 12];
  fill_uniform(x, 11 * 12, 3, -2.0f, 2.0f);
  check_module_map(m, x, 11, 12, "scale 0.9");
  pose_attention_free(m);
}

/* The map is the one the forward uses: for the query/key/value layout (no output projection),
 * head h's output columns are sum_j probs[i, j] * v[positions[j], head columns]. */
static void map_reproduces_forward(void **state) {
  (void)state;
  for (int mode = 0; mode < 3; mode++) {
    pose_attention_config cfg;
    pose_attention_config_init(&cfg);
    cfg.mode = (pose_attention_mode)mode;
    cfg.dim = 16, cfg.num_heads = 4, cfg.skip_factor = 3, cfg.max_seq_len = 40;
    cfg.seed = 21 + (uint64_t)mode;
    const size_t n = 29, d = cfg.dim, hd = d / cfg.num_heads;
    pose_attention_module *m = NULL;
    assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
    float *x = test_alloc_f32(n * d), *out = test_alloc_f32(n * d), *got = test_alloc_f32(n * d);
    fill_uniform(x, n * d, 9 + (uint64_t)mode, -3.0f, 3.0f);
    assert_int_equal(pose_attention_forward(m, x, 1, n, NULL, out, n * d), POSE_OK);
    const float *wv, *bv;
    size_t count, nk;
    assert_int_equal(pose_attention_get_weight(m, "value.weight", &wv, &count), POSE_OK);
    assert_int_equal(pose_attention_get_weight(m, "value.bias", &bv, &count), POSE_OK);
    double *v = test_alloc_f64(n * d);
    ref64_linear(x, n, d, wv, bv, d, v);
    assert_int_equal(pose_attention_map_size(m, n, &nk), POSE_OK);
    float *probs = test_alloc_f32(n * nk);
    size_t *pos = calloc(nk, sizeof *pos);
    assert_non_null(pos);
    for (size_t h = 0; h < cfg.num_heads; h++) {
      assert_int_equal(pose_attention_map(m, x, n, h, probs, n * nk, pos, nk), POSE_OK);
      for (size_t i = 0; i < n; i++) {
        for (size_t c = h * hd; c < (h + 1) * hd; c++) {
          double acc = 0.0;
          for (size_t j = 0; j < nk; j++) acc += probs[i * nk + j] * v[pos[j] * d + c];
          got[i * d + c] = (float)acc;
        }
      }
    }
    assert_close_f32_tol(got, out, n * d, 1e-5, 1e-4, pose_attention_mode_string(cfg.mode));
    free(x), free(out), free(got), free(v), free(probs), free(pos);
    pose_attention_free(m);
  }
}

/* ---- models --------------------------------------------------------------------------------- */

/* Every state_dict tensor of a model, for create_from_weights and the reference binder. The
 * array points into the model. */
static pose_weight *model_weights(const pose_model *m, size_t *n) {
  *n = pose_model_num_weights(m);
  pose_weight *w = calloc(*n, sizeof *w);
  assert_non_null(w);
  for (size_t i = 0; i < *n; i++) {
    w[i].name = pose_model_weight_name(m, i);
    assert_int_equal(pose_model_get_weight(m, w[i].name, &w[i].data, &w[i].count), POSE_OK);
  }
  return w;
}

/* The tensors of `prefix`<i>. with the prefix stripped: what a one-layer model or an attention
 * module of that layer takes. sub selects the part ("" for the whole layer, "attn." for the
 * attention, whose names lose that too). Names are malloc'd; free with free_weights. */
static pose_weight *layer_slice(const pose_model *m, const char *prefix, size_t layer,
                                const char *sub, size_t *count) {
  size_t n;
  pose_weight *all = model_weights(m, &n);
  pose_weight *out = calloc(n, sizeof *out);
  assert_non_null(out);
  char head[96];
  snprintf(head, sizeof head, "%s%zu.%s", prefix, layer, sub);
  *count = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(all[i].name, head, strlen(head)) != 0) continue;
    out[*count] = all[i];
    out[*count].name = strdup(all[i].name + strlen(head));
    assert_non_null(out[*count].name);
    (*count)++;
  }
  free(all);
  return out;
}

static void free_weights(pose_weight *w, size_t n) {
  for (size_t i = 0; i < n; i++) free((char *)w[i].name);
  free(w);
}

static const char *layer_prefix(const pose_model_config *cfg) {
  return cfg->kind == POSE_MODEL_ENCODER ? "layers." : "pose_encoder.layers.";
}

/* Layer `layer`'s attention as a stand-alone module with the model's settings. */
static pose_attention_module *layer_attention(const pose_model *m, const pose_model_config *cfg,
                                              size_t layer) {
  size_t n;
  pose_weight *w = layer_slice(m, layer_prefix(cfg), layer, "attn.", &n);
  pose_attention_config ac;
  pose_attention_config_init(&ac);
  ac.layout = POSE_LAYOUT_QUERY_KEY_VALUE;
  ac.mode = cfg->mode, ac.dim = cfg->dim, ac.num_heads = cfg->num_heads;
  ac.skip_factor = cfg->skip_factor, ac.max_seq_len = cfg->max_seq_len;
  pose_attention_module *a = NULL;
  assert_int_equal(pose_attention_create_from_weights(&ac, w, n, &a), POSE_OK);
  free_weights(w, n);
  return a;
}

/* Runs layer `layer` of m on x[n, dim] in place through a one-layer POSE_MODEL_LAYER model built
 * from its weights: libpose's own layer forward, independent of attention_map.c. */
static void run_layer(const pose_model *m, const pose_model_config *cfg, size_t layer, float *x,
                      size_t n) {
  size_t nw;
  pose_weight *w = layer_slice(m, layer_prefix(cfg), layer, "", &nw);
  pose_model_config lc;
  pose_model_config_init(&lc, POSE_MODEL_LAYER);
  lc.dim = cfg->dim, lc.ff_dim = cfg->ff_dim ? cfg->ff_dim : 4 * cfg->dim;
  lc.num_heads = cfg->num_heads, lc.mode = cfg->mode;
  lc.skip_factor = cfg->skip_factor, lc.max_seq_len = cfg->max_seq_len;
  lc.layer_norm_eps = cfg->layer_norm_eps;
  pose_model *lm = NULL;
  assert_int_equal(pose_model_create_from_weights(&lc, w, nw, &lm), POSE_OK);
  float *y = test_alloc_f32(n * cfg->dim);
  assert_int_equal(pose_model_forward(lm, x, 1, n, NULL, y, n * cfg->dim), POSE_OK);
  memcpy(x, y, n * cfg->dim * sizeof(float));
  free(y);
  pose_model_free(lm);
  free_weights(w, nw);
}

/* The model's input stage on one sequence, written with public calls: the embedding rows or
 * the feature_extractor, then the slide 5 encoding when configured. Returns x[n, dim]. */
static float *input_stage(const pose_model *m, const pose_model_config *cfg, const float *input,
                          const int64_t *tokens, size_t n) {
  const size_t d = cfg->dim;
  float *x = test_alloc_f32(n * d);
  const float *w, *b;
  size_t count;
  switch (cfg->kind) {
    case POSE_MODEL_SUMMARIZER:
      assert_int_equal(pose_model_get_weight(m, "embedding.weight", &w, &count), POSE_OK);
      for (size_t p = 0; p < n; p++) memcpy(x + p * d, w + tokens[p] * d, d * sizeof(float));
      break;
    case POSE_MODEL_CLASSIFIER:
      assert_int_equal(pose_model_get_weight(m, "feature_extractor.weight", &w, &count), POSE_OK);
      assert_int_equal(pose_model_get_weight(m, "feature_extractor.bias", &b, &count), POSE_OK);
      assert_int_equal(pose_linear(input, n, cfg->input_dim, w, b, d, x, n * d), POSE_OK);
      break;
    default: memcpy(x, input, n * d * sizeof(float)); break;
  }
  if (cfg->positional_encoding) {
    assert_int_equal(pose_positional_encoding_add(x, 1, n, d), POSE_OK);
  }
  return x;
}

/* For every layer and head of m: the model map equals the module map of that layer's attention
 * on the input stage followed by the earlier layers, run through one-layer models. */
static void check_model_maps(const pose_model *m, const float *input, const int64_t *tokens,
                             size_t n) {
  pose_model_config cfg = {.struct_size = sizeof cfg};
  assert_int_equal(pose_model_get_config(m, &cfg), POSE_OK);
  float *x = input_stage(m, &cfg, input, tokens, n);
  for (size_t l = 0; l < cfg.num_layers; l++) {
    if (l > 0) run_layer(m, &cfg, l - 1, x, n);
    pose_attention_module *a = layer_attention(m, &cfg, l);
    size_t nk, mk;
    assert_int_equal(pose_attention_map_size(a, n, &nk), POSE_OK);
    assert_int_equal(pose_model_attention_map_size(m, l, n, &mk), POSE_OK);
    assert_int_equal(mk, nk);
    float *got = test_alloc_f32(n * nk), *want = test_alloc_f32(n * nk);
    size_t *gp = calloc(nk, sizeof *gp), *wp = calloc(nk, sizeof *wp);
    assert_non_null(gp), assert_non_null(wp);
    for (size_t h = 0; h < cfg.num_heads; h++) {
      char what[128];
      snprintf(what, sizeof what, "%s layer %zu head %zu n %zu", pose_model_kind_string(cfg.kind),
               l, h, n);
      assert_int_equal(pose_model_attention_map(m, l, input, tokens, n, h, got, n * nk, gp, nk),
                       POSE_OK);
      assert_int_equal(pose_attention_map(a, x, n, h, want, n * nk, wp, nk), POSE_OK);
      if (l == 0 && cfg.kind != POSE_MODEL_CLASSIFIER) {
        /* Same input bits, same code: the same map exactly. */
        assert_memory_equal(got, want, n * nk * sizeof(float));
      } else {
        assert_close_f32_tol(got, want, n * nk, 1e-5, 1e-4, what);
      }
      assert_memory_equal(gp, wp, nk * sizeof *gp);
    }
    free(got), free(want), free(gp), free(wp);
    pose_attention_free(a);
  }
  free(x);
}

static void encoder_maps_follow_earlier_layers(void **state) {
  (void)state;
  for (int mode = 0; mode < 3; mode++) {
    pose_model_config cfg;
    pose_model_config_init(&cfg, POSE_MODEL_ENCODER);
    cfg.dim = 16, cfg.ff_dim = 24, cfg.num_layers = 3, cfg.num_heads = 2;
    cfg.mode = (pose_attention_mode)mode, cfg.skip_factor = 3, cfg.max_seq_len = 30;
    cfg.seed = 40 + (uint64_t)mode;
    pose_model *m = NULL;
    assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
    const size_t lens[] = {1, 7, 20};
    for (size_t t = 0; t < 3; t++) {
      float *x = test_alloc_f32(lens[t] * cfg.dim);
      fill_uniform(x, lens[t] * cfg.dim, 60 + t, -2.0f, 2.0f);
      check_model_maps(m, x, NULL, lens[t]);
      free(x);
    }
    pose_model_free(m);
  }
}

/* More rows than the rebuilt feed-forward holds at once (256), so its row chunks are covered. */
static void long_sequence_model_map(void **state) {
  (void)state;
  pose_model_config cfg;
  pose_model_config_init(&cfg, POSE_MODEL_ENCODER);
  cfg.dim = 8, cfg.ff_dim = 16, cfg.num_layers = 2, cfg.skip_factor = 7, cfg.seed = 3;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
  const size_t n = 600;
  float *x = test_alloc_f32(n * cfg.dim);
  fill_uniform(x, n * cfg.dim, 8, -1.0f, 1.0f);
  check_model_maps(m, x, NULL, n);
  free(x);
  pose_model_free(m);
}

static void single_layer_model_map(void **state) {
  (void)state;
  pose_model_config cfg;
  pose_model_config_init(&cfg, POSE_MODEL_LAYER);
  cfg.dim = 8, cfg.ff_dim = 12, cfg.skip_factor = 2, cfg.num_heads = 2, cfg.seed = 11;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
  float x[9 * 8];
  fill_uniform(x, 9 * 8, 12, -1.5f, 1.5f);
  /* A layer's own weights have no prefix: compare with a module made from them. */
  size_t nw, n = 0;
  pose_weight *all = model_weights(m, &nw), attn[6];
  for (size_t i = 0; i < nw; i++) {
    if (strncmp(all[i].name, "attn.", 5) == 0) {
      attn[n] = all[i];
      attn[n++].name = all[i].name + 5;
    }
  }
  assert_int_equal(n, 6);
  pose_attention_config ac;
  pose_attention_config_init(&ac);
  ac.dim = 8, ac.num_heads = 2, ac.skip_factor = 2;
  pose_attention_module *a = NULL;
  assert_int_equal(pose_attention_create_from_weights(&ac, attn, 6, &a), POSE_OK);
  float got[9 * 5], want[9 * 5];
  size_t gp[5], wp[5];
  for (size_t h = 0; h < 2; h++) {
    assert_int_equal(pose_model_attention_map(m, 0, x, NULL, 9, h, got, 45, gp, 5), POSE_OK);
    assert_int_equal(pose_attention_map(a, x, 9, h, want, 45, wp, 5), POSE_OK);
    assert_memory_equal(got, want, sizeof got);
    assert_memory_equal(gp, wp, sizeof gp);
  }
  free(all);
  pose_attention_free(a);
  pose_model_free(m);
}

static void summarizer_maps(void **state) {
  (void)state;
  for (int pe = 0; pe < 2; pe++) {
    pose_model_config cfg;
    pose_model_config_init(&cfg, POSE_MODEL_SUMMARIZER);
    cfg.vocab_size = 50, cfg.dim = 12, cfg.num_layers = 2, cfg.num_heads = 3;
    cfg.skip_factor = 2, cfg.positional_encoding = pe, cfg.seed = 70 + (uint64_t)pe;
    pose_model *m = NULL;
    assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
    int64_t tokens[15];
    for (size_t i = 0; i < 15; i++) tokens[i] = (int64_t)((i * 7 + 3) % 50);
    check_model_maps(m, NULL, tokens, 15);
    pose_model_free(m);
  }
}

static void classifier_maps(void **state) {
  (void)state;
  for (int pe = 0; pe < 2; pe++) {
    pose_model_config cfg;
    pose_model_config_init(&cfg, POSE_MODEL_CLASSIFIER);
    cfg.input_dim = 10, cfg.dim = 8, cfg.num_layers = 2, cfg.num_classes = 4;
    cfg.mode = POSE_MODE_ADAPTIVE, cfg.max_seq_len = 20, cfg.positional_encoding = pe;
    cfg.seed = 90 + (uint64_t)pe;
    pose_model *m = NULL;
    assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
    float in[17 * 10];
    fill_uniform(in, 17 * 10, 5, -1.0f, 1.0f);
    check_model_maps(m, in, NULL, 17);
    pose_model_free(m);
  }
}

/* The encoder's layer-2 map against float64 all the way: the reference layer forward
 * (ref64.h) twice, then the reference map on its double output. */
static void encoder_map_matches_float64(void **state) {
  (void)state;
  pose_model_config cfg;
  pose_model_config_init(&cfg, POSE_MODEL_ENCODER);
  cfg.dim = 16, cfg.ff_dim = 32, cfg.num_layers = 3, cfg.num_heads = 4, cfg.skip_factor = 2;
  cfg.seed = 123;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
  size_t nw;
  pose_weight *w = model_weights(m, &nw);
  ref64_model_weights rw;
  ref64_model_bind(&cfg, w, nw, &rw);
  const size_t n = 21, d = cfg.dim, nk = 11;
  float x[21 * 16];
  fill_uniform(x, n * d, 31, -2.0f, 2.0f);
  double xd[21 * 16];
  to_f64(x, n * d, xd);
  ref64_layer_forward_d(&cfg, &rw.layers[0], xd, n, xd);
  ref64_layer_forward_d(&cfg, &rw.layers[1], xd, n, xd);
  const ref64_attention_weights *aw = &rw.layers[2].attn;
  float got[21 * 11];
  double want[21 * 11];
  size_t gp[11], wp[11];
  for (size_t h = 0; h < cfg.num_heads; h++) {
    assert_int_equal(pose_model_attention_map(m, 2, x, NULL, n, h, got, n * nk, gp, nk), POSE_OK);
    ref_map_d(xd, n, d, aw->query_weight, aw->query_bias, aw->key_weight, aw->key_bias,
              cfg.num_heads, h, 1.0 / sqrt(4.0), 2, want, wp);
    assert_close_f64ref(got, want, n * nk, 1e-5, 1e-4, "encoder layer 2 vs float64");
    assert_memory_equal(gp, wp, sizeof gp);
  }
  ref64_model_weights_free(&rw);
  free(w);
  pose_model_free(m);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void untouched(const float *probs, size_t np, const size_t *pos, size_t npos) {
  for (size_t i = 0; i < np; i++) assert_true(probs[i] == SENTINEL);
  for (size_t i = 0; i < npos; i++) assert_int_equal(pos[i], 999);
}

static void reset(float *probs, size_t np, size_t *pos, size_t npos) {
  for (size_t i = 0; i < np; i++) probs[i] = SENTINEL;
  for (size_t i = 0; i < npos; i++) pos[i] = 999;
}

static void module_errors(void **state) {
  (void)state;
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.dim = 8, cfg.num_heads = 2, cfg.skip_factor = 3;
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
  float x[10 * 8] = {0}, probs[40];
  size_t pos[4], nk = 0;
  fill_uniform(x, 80, 1, -1.0f, 1.0f);
  assert_int_equal(pose_attention_map_size(NULL, 10, &nk), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("pose_attention_map_size: attn is NULL");
  assert_int_equal(pose_attention_map_size(m, 10, NULL), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("num_keys is NULL");
  assert_int_equal(pose_attention_map_size(m, 0, &nk), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("seq_len is 0");
  assert_int_equal(nk, 0);
  assert_int_equal(pose_attention_map_size(m, 10, &nk), POSE_OK);
  assert_int_equal(nk, 4);

  reset(probs, 40, pos, 4);
  assert_int_equal(pose_attention_map(NULL, x, 10, 0, probs, 40, pos, 4),
                   POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("pose_attention_map: attn is NULL");
  assert_int_equal(pose_attention_map(m, NULL, 10, 0, probs, 40, pos, 4),
                   POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("x is NULL");
  assert_int_equal(pose_attention_map(m, x, 10, 0, NULL, 40, pos, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("probs is NULL");
  assert_int_equal(pose_attention_map(m, x, 10, 0, probs, 40, NULL, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("positions is NULL");
  assert_int_equal(pose_attention_map(m, x, 0, 0, probs, 40, pos, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("seq_len is 0");
  assert_int_equal(pose_attention_map(m, x, 10, 2, probs, 40, pos, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("head is 2, the attention has 2");
  assert_int_equal(pose_attention_map(m, x, 10, SIZE_MAX, probs, 40, pos, 4),
                   POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_map(m, x, 10, 0, probs, 39, pos, 4), POSE_ERR_BUFFER_TOO_SMALL);
  CONTAINS("probs_count is 39 elements, need 40");
  assert_int_equal(pose_attention_map(m, x, 10, 0, probs, 40, pos, 3), POSE_ERR_BUFFER_TOO_SMALL);
  CONTAINS("positions_count is 3 elements, need 4");
  /* seq_len * num_keys overflows: ~2^63 / 3 columns for 2^63 rows. */
  assert_int_equal(pose_attention_map(m, x, (size_t)1 << 63, 0, probs, SIZE_MAX, pos, SIZE_MAX),
                   POSE_ERR_SIZE_OVERFLOW);
  CONTAINS("pose_attention_map: seq_len");
  /* 2^31 rows: the map's bytes fit in size_t, but not the BLAS integer range. */
  assert_int_equal(pose_attention_map(m, x, (size_t)1 << 31, 0, probs, SIZE_MAX, pos, SIZE_MAX),
                   POSE_ERR_SIZE_OVERFLOW);
  CONTAINS("too large");
  untouched(probs, 40, pos, 4);
  assert_int_equal(pose_attention_map(m, x, 10, 1, probs, 40, pos, 4), POSE_OK);
  pose_attention_free(m);
}

static void model_errors(void **state) {
  (void)state;
  pose_model_config cfg;
  pose_model_config_init(&cfg, POSE_MODEL_ENCODER);
  cfg.dim = 8, cfg.ff_dim = 8, cfg.num_layers = 2, cfg.num_heads = 2, cfg.skip_factor = 2;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
  pose_model_config_init(&cfg, POSE_MODEL_SUMMARIZER);
  cfg.vocab_size = 10, cfg.dim = 8, cfg.num_layers = 1, cfg.skip_factor = 2;
  pose_model *s = NULL;
  assert_int_equal(pose_model_create(&cfg, &s), POSE_OK);
  float x[6 * 8], probs[18];
  int64_t tok[6] = {0, 1, 2, 3, 4, 9};
  size_t pos[3], nk = 0;
  fill_uniform(x, 48, 2, -1.0f, 1.0f);

  assert_int_equal(pose_model_attention_map_size(NULL, 0, 6, &nk), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("pose_model_attention_map_size: model is NULL");
  assert_int_equal(pose_model_attention_map_size(m, 0, 6, NULL), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("num_keys is NULL");
  assert_int_equal(pose_model_attention_map_size(m, 0, 0, &nk), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("seq_len is 0");
  assert_int_equal(pose_model_attention_map_size(m, 2, 6, &nk), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("layer_index is 2, the model has 2");
  assert_int_equal(nk, 0);
  assert_int_equal(pose_model_attention_map_size(m, 1, 6, &nk), POSE_OK);
  assert_int_equal(nk, 3);

  reset(probs, 18, pos, 3);
#define MAP(model, layer, in, tk, n, h, pc, nc) \
  pose_model_attention_map(model, layer, in, tk, n, h, probs, pc, pos, nc)
  assert_int_equal(MAP(NULL, 0, x, NULL, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("pose_model_attention_map: model is NULL");
  assert_int_equal(pose_model_attention_map(m, 0, x, NULL, 6, 0, NULL, 18, pos, 3),
                   POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("probs is NULL");
  assert_int_equal(pose_model_attention_map(m, 0, x, NULL, 6, 0, probs, 18, NULL, 3),
                   POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("positions is NULL");
  assert_int_equal(MAP(m, 0, x, NULL, 0, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("seq_len is 0");
  assert_int_equal(MAP(m, 2, x, NULL, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("layer_index is 2, the model has 2");
  assert_int_equal(MAP(m, 1, x, NULL, 6, 2, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("head is 2");
  assert_int_equal(MAP(m, 0, NULL, NULL, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("input is NULL");
  assert_int_equal(MAP(m, 0, x, tok, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("tokens is not NULL, but this encoder takes float input");
  assert_int_equal(MAP(m, 0, NULL, tok, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("tokens is not NULL");
  assert_int_equal(MAP(s, 0, NULL, NULL, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("tokens is NULL");
  assert_int_equal(MAP(s, 0, x, tok, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("input is not NULL, but a summarizer takes tokens");
  assert_int_equal(MAP(s, 0, x, NULL, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("input is not NULL");
  tok[4] = 10;
  assert_int_equal(MAP(s, 0, NULL, tok, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("tokens[4] is 10, need 0..9");
  tok[4] = -1;
  assert_int_equal(MAP(s, 0, NULL, tok, 6, 0, 18, 3), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("tokens[4] is -1");
  tok[4] = 4;
  assert_int_equal(MAP(m, 1, x, NULL, 6, 0, 17, 3), POSE_ERR_BUFFER_TOO_SMALL);
  CONTAINS("probs_count is 17 elements, need 18");
  assert_int_equal(MAP(s, 0, NULL, tok, 6, 0, 18, 2), POSE_ERR_BUFFER_TOO_SMALL);
  CONTAINS("positions_count is 2 elements, need 3");
  assert_int_equal(MAP(m, 1, x, NULL, (size_t)1 << 62, 0, SIZE_MAX, SIZE_MAX),
                   POSE_ERR_SIZE_OVERFLOW);
  CONTAINS("pose_model_attention_map");
  assert_int_equal(MAP(m, 1, x, NULL, (size_t)1 << 31, 0, SIZE_MAX, SIZE_MAX),
                   POSE_ERR_SIZE_OVERFLOW);
#undef MAP
  untouched(probs, 18, pos, 3);
  assert_int_equal(pose_model_attention_map(s, 0, NULL, tok, 6, 0, probs, 18, pos, 3), POSE_OK);
  assert_int_equal(pose_model_attention_map(m, 1, x, NULL, 6, 1, probs, 18, pos, 3), POSE_OK);
  pose_model_free(m);
  pose_model_free(s);
}

/* ---- allocation failure --------------------------------------------------------------------- */

/* Fails the 1st, 2nd, ... allocation of creating a model and mapping its last layer (which
 * rebuilds the layer input through two layers, then maps), and of a module map: each returns
 * out-of-memory, frees everything and writes nothing, until every allocation succeeds. */
static void every_failed_allocation_is_clean(void **state) {
  (void)state;
  int64_t tokens[13];
  for (size_t i = 0; i < 13; i++) tokens[i] = (int64_t)(i * 5 % 11);
  float probs[13 * 7], first[13 * 7];
  size_t pos[7], n, model_allocs = 0;
  for (n = 1; n < 10000; n++) {
    test_counting c = {0, 0, n};
    pose_allocator al = test_counting_allocator(&c);
    assert_int_equal(pose_set_allocator(&al), POSE_OK);
    pose_model_config cfg;
    pose_model_config_init(&cfg, POSE_MODEL_SUMMARIZER);
    cfg.vocab_size = 11, cfg.dim = 6, cfg.num_layers = 3, cfg.skip_factor = 2;
    cfg.positional_encoding = 1;
    pose_model *m = (pose_model *)1;
    pose_status st = pose_model_create(&cfg, &m);
    if (st == POSE_OK) {
      if (model_allocs == 0) model_allocs = c.total;
      reset(probs, 13 * 7, pos, 7);
      st = pose_model_attention_map(m, 2, NULL, tokens, 13, 0, probs, 13 * 7, pos, 7);
      if (st != POSE_OK) untouched(probs, 13 * 7, pos, 7);
      pose_model_free(m);
    } else {
      assert_null(m);
    }
    assert_int_equal(c.live, 0);
    assert_int_equal(pose_set_allocator(NULL), POSE_OK);
    if (st == POSE_OK) break;
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
  }
  /* The map itself failed several times (layer-input scratch, each attention forward, the map
   * scratch), not only the model's creation. */
  assert_true(n > model_allocs + 3);
  memcpy(first, probs, sizeof first);

  pose_model_config cfg;
  pose_model_config_init(&cfg, POSE_MODEL_SUMMARIZER);
  cfg.vocab_size = 11, cfg.dim = 6, cfg.num_layers = 3, cfg.skip_factor = 2;
  cfg.positional_encoding = 1;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
  assert_int_equal(pose_model_attention_map(m, 2, NULL, tokens, 13, 0, probs, 13 * 7, pos, 7),
                   POSE_OK);
  assert_memory_equal(probs, first, sizeof first); /* the result after the failures is right */
  pose_model_free(m);

  for (n = 1; n < 100; n++) {
    test_counting c = {0, 0, n};
    pose_allocator al = test_counting_allocator(&c);
    assert_int_equal(pose_set_allocator(&al), POSE_OK);
    pose_attention_config ac;
    pose_attention_config_init(&ac);
    ac.layout = POSE_LAYOUT_QKV_PROJ, ac.dim = 6, ac.num_heads = 2;
    pose_attention_module *a = NULL;
    pose_status st = pose_attention_create(&ac, &a);
    size_t created = c.total;
    if (st == POSE_OK) {
      float x[13 * 6];
      fill_uniform(x, 13 * 6, 4, -1.0f, 1.0f);
      reset(probs, 13 * 7, pos, 7);
      st = pose_attention_map(a, x, 13, 1, probs, 13 * 7, pos, 7);
      if (st != POSE_OK) {
        assert_true(c.total > created); /* the map's own allocation failed */
        untouched(probs, 13 * 7, pos, 7);
      }
      pose_attention_free(a);
    }
    assert_int_equal(c.live, 0);
    assert_int_equal(pose_set_allocator(NULL), POSE_OK);
    if (st == POSE_OK) break;
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
  }
  assert_true(n > 1);
}

/* ---- threads -------------------------------------------------------------------------------- */

/* The map's projections run on the worker pool: any thread count gives the same bits. */
static void same_bits_for_any_thread_count(void **state) {
  (void)state;
  pose_model_config cfg;
  pose_model_config_init(&cfg, POSE_MODEL_ENCODER);
  cfg.dim = 16, cfg.ff_dim = 32, cfg.num_layers = 2, cfg.num_heads = 2, cfg.skip_factor = 3;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
  const size_t n = 700, nk = 234;
  float *x = test_alloc_f32(n * 16), *one = test_alloc_f32(n * nk), *many = test_alloc_f32(n * nk);
  size_t *pos = calloc(nk, sizeof *pos);
  assert_non_null(pos);
  fill_uniform(x, n * 16, 17, -1.0f, 1.0f);
  int before = pose_get_num_threads();
  assert_int_equal(pose_set_num_threads(1), POSE_OK);
  assert_int_equal(pose_model_attention_map(m, 1, x, NULL, n, 1, one, n * nk, pos, nk), POSE_OK);
  assert_int_equal(pose_set_num_threads(3), POSE_OK);
  assert_int_equal(pose_model_attention_map(m, 1, x, NULL, n, 1, many, n * nk, pos, nk), POSE_OK);
  assert_int_equal(pose_set_num_threads(before), POSE_OK);
  assert_memory_equal(one, many, n * nk * sizeof(float));
  free(x), free(one), free(many), free(pos);
  pose_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(module_maps_match_reference),
      cmocka_unit_test(module_map_with_custom_scale),
      cmocka_unit_test(map_reproduces_forward),
      cmocka_unit_test(encoder_maps_follow_earlier_layers),
      cmocka_unit_test(long_sequence_model_map),
      cmocka_unit_test(single_layer_model_map),
      cmocka_unit_test(summarizer_maps),
      cmocka_unit_test(classifier_maps),
      cmocka_unit_test(encoder_map_matches_float64),
      cmocka_unit_test(module_errors),
      cmocka_unit_test(model_errors),
      cmocka_unit_test(every_failed_allocation_is_clean),
      cmocka_unit_test(same_bits_for_any_thread_count),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
