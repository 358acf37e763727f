/* Attention: the functional form (slide 2), the module in both layouts and all modes (slides
 * 1, 3, 4) against PyTorch fixtures and the float64 reference, padding, the complexity API, and
 * every error path. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "pose.h"
#include "ref64.h"
#include "testutil.h"

#define CONTAINS(s) assert_non_null(strstr(pose_last_error(), s))

/* ---- functional ---------------------------------------------------------------------------- */

static void functional_matches_pytorch(void **state) {
  (void)state;
  for (int c = 0; c < 5; c++) {
    char name[64];
    snprintf(name, sizeof name, "functional_%d.io.safetensors", c);
    fx_file *f = fx_open(name);
    size_t b = fx_meta_size(f, "batch"), n = fx_meta_size(f, "seq_len");
    size_t d = fx_meta_size(f, "dim"), k = fx_meta_size(f, "skip_factor");
    float *out = test_alloc_f32(b * n * d);
    assert_int_equal(pose_attention(fx_f32(f, "query"), fx_f32(f, "key"), fx_f32(f, "value"), b,
                                    n, d, k, 1.0f, out, b * n * d),
                     POSE_OK);
    assert_close_f32(out, fx_f32(f, "output"), b * n * d, name);
    free(out);
    fx_close(f);
  }
}

static void functional_matches_reference(void **state) {
  (void)state;
  /* Lengths below, equal to, and not divisible by the skip; one key; a scale. */
  const size_t cases[][4] = {{2, 1, 3, 1}, {1, 3, 4, 5}, {3, 29, 7, 4}, {1, 130, 16, 1},
                             {2, 200, 8, 200}, {1, 257, 12, 3}};
  for (size_t c = 0; c < 6; c++) {
    size_t b = cases[c][0], n = cases[c][1], d = cases[c][2], k = cases[c][3], cnt = b * n * d;
    float *q = test_alloc_f32(cnt), *kk = test_alloc_f32(cnt), *v = test_alloc_f32(cnt);
    float *out = test_alloc_f32(cnt);
    double *ref = test_alloc_f64(cnt);
    fill_uniform(q, cnt, 100 + c, -1, 1);
    fill_uniform(kk, cnt, 200 + c, -1, 1);
    fill_uniform(v, cnt, 300 + c, -1, 1);
    assert_int_equal(pose_attention(q, kk, v, b, n, d, k, 0.37f, out, cnt), POSE_OK);
    ref64_pose_attention(q, kk, v, b, n, d, k, 0.37f, ref);
    assert_close_f64ref(out, ref, cnt, 1e-5, 1e-5, "pose_attention");
    free(q), free(kk), free(v), free(out), free(ref);
  }
}

static void functional_huge_scores_stay_finite(void **state) {
  (void)state;
  /* Scores of about 2.6e38, near float overflow, overflow a naive exp; max-subtraction keeps
   * them finite. Key 1 scores 2.6e38, key 0 a quarter less: key 1 takes all the weight. */
  float q[2 * 4], k[2 * 4], v[2 * 4], out[2 * 4];
  for (int i = 0; i < 8; i++) q[i] = k[i] = 8e18f, v[i] = (float)i;
  k[0] = 0.0f;
  assert_int_equal(pose_attention(q, k, v, 1, 2, 4, 1, 1.0f, out, 8), POSE_OK);
  for (int i = 0; i < 8; i++) assert_true(isfinite(out[i]));
  for (int i = 0; i < 4; i++) assert_true(out[i] == v[4 + i] && out[4 + i] == v[4 + i]);
}

static void functional_errors(void **state) {
  (void)state;
  float a[8] = {0}, o[8] = {0};
  assert_int_equal(pose_attention(NULL, a, a, 1, 2, 4, 1, 1, o, 8), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("query is NULL");
  assert_int_equal(pose_attention(a, NULL, a, 1, 2, 4, 1, 1, o, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, NULL, 1, 2, 4, 1, 1, o, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, a, 1, 2, 4, 1, 1, NULL, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, a, 0, 2, 4, 1, 1, o, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, a, 1, 0, 4, 1, 1, o, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, a, 1, 2, 0, 1, 1, o, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, a, 1, 2, 4, 0, 1, o, 8), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("skip_factor is 0");
  assert_int_equal(pose_attention(a, a, a, 1, 2, 4, 1, NAN, o, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, a, 1, 2, 4, 1, INFINITY, o, 8),
                   POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention(a, a, a, 1, 2, 4, 1, 1, o, 7), POSE_ERR_BUFFER_TOO_SMALL);
  CONTAINS("need 8");
  assert_int_equal(pose_attention(a, a, a, SIZE_MAX, 2, 4, 1, 1, o, 8), POSE_ERR_SIZE_OVERFLOW);
  assert_int_equal(pose_attention(a, a, a, 1, (size_t)1 << 33, 1, 1, 1, o, (size_t)1 << 33),
                   POSE_ERR_SIZE_OVERFLOW);
  for (int i = 0; i < 8; i++) assert_true(o[i] == 0.0f); /* nothing written */
}

/* ---- the module against PyTorch ------------------------------------------------------------ */

/* Runs fixture `name` through a module built from its weights with cfg. */
static void check_module_fixture(const char *kind, int index, pose_attention_config *cfg) {
  char name[64], wname[64];
  snprintf(name, sizeof name, "%s_%d.io.safetensors", kind, index);
  snprintf(wname, sizeof wname, "%s_%d.weights.safetensors", kind, index);
  fx_file *io = fx_open(name), *wf = fx_open(wname);
  size_t nw, b = fx_meta_size(io, "batch"), n = fx_meta_size(io, "seq_len");
  cfg->dim = fx_meta_size(io, "dim");
  pose_weight *w = fx_weights(wf, &nw);
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create_from_weights(cfg, w, nw, &m), POSE_OK);
  size_t cnt = b * n * cfg->dim;
  float *out = test_alloc_f32(cnt);
  assert_int_equal(pose_attention_forward(m, fx_f32(io, "input"), b, n, NULL, out, cnt), POSE_OK);
  assert_close_f32(out, fx_f32(io, "output"), cnt, name);
  if (fx_meta(io, "effective_skip_factor") != NULL) {
    size_t k;
    assert_int_equal(pose_attention_skip_for(m, n, &k), POSE_OK);
    assert_int_equal(k, fx_meta_size(io, "effective_skip_factor"));
  }
  free(out), free(w);
  pose_attention_free(m);
  fx_close(io), fx_close(wf);
}

static void qkv_proj_matches_pytorch(void **state) {
  (void)state;
  for (int c = 0; c < 5; c++) {
    char name[64];
    snprintf(name, sizeof name, "qkv_proj_%d.io.safetensors", c);
    fx_file *io = fx_open(name);
    pose_attention_config cfg;
    pose_attention_config_init(&cfg);
    cfg.layout = POSE_LAYOUT_QKV_PROJ;
    cfg.mode = POSE_MODE_FULL;
    cfg.num_heads = fx_meta_size(io, "num_heads");
    cfg.qkv_bias = (int)fx_meta_size(io, "qkv_bias");
    fx_close(io);
    check_module_fixture("qkv_proj", c, &cfg);
  }
}

static void skipwise_matches_pytorch(void **state) {
  (void)state;
  for (int c = 0; c < 7; c++) {
    char name[64];
    snprintf(name, sizeof name, "skipwise_%d.io.safetensors", c);
    fx_file *io = fx_open(name);
    pose_attention_config cfg;
    pose_attention_config_init(&cfg);
    cfg.skip_factor = fx_meta_size(io, "skip_factor");
    fx_close(io);
    check_module_fixture("skipwise", c, &cfg);
  }
}

static void adaptive_matches_pytorch(void **state) {
  (void)state;
  for (int c = 0; c < 5; c++) {
    char name[64];
    snprintf(name, sizeof name, "adaptive_%d.io.safetensors", c);
    fx_file *io = fx_open(name);
    pose_attention_config cfg;
    pose_attention_config_init(&cfg);
    cfg.mode = POSE_MODE_ADAPTIVE;
    cfg.max_seq_len = fx_meta_size(io, "max_seq_len");
    fx_close(io);
    check_module_fixture("adaptive", c, &cfg);
  }
}

/* ---- the module against the float64 reference ---------------------------------------------- */

/* Reference weights bound to a module's own weights (read back through get_weight). */
static void bind_module(const pose_attention_module *m, const pose_attention_config *cfg,
                        pose_weight *w, size_t *n, ref64_attention_weights *rw) {
  static const char *names[] = {"qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
                                "query.weight", "query.bias", "key.weight", "key.bias",
                                "value.weight", "value.bias"};
  *n = 0;
  for (size_t i = 0; i < 10; i++) {
    const float *data;
    size_t count;
    if (pose_attention_get_weight(m, names[i], &data, &count) == POSE_OK) {
      w[(*n)++] = (pose_weight){names[i], data, count};
    }
  }
  ref64_attention_bind(cfg, w, *n, "", rw);
}

static void module_run_vs_reference(pose_attention_config *cfg, size_t b, size_t n,
                                    const size_t *lengths) {
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(cfg, &m), POSE_OK);
  pose_weight w[10];
  size_t nw;
  ref64_attention_weights rw;
  bind_module(m, cfg, w, &nw, &rw);
  size_t cnt = b * n * cfg->dim;
  float *x = test_alloc_f32(cnt), *out = test_alloc_f32(cnt);
  double *ref = test_alloc_f64(cnt);
  fill_uniform(x, cnt, cfg->seed + 7, -1, 1);
  assert_int_equal(pose_attention_forward(m, x, b, n, lengths, out, cnt), POSE_OK);
  ref64_attention_forward(cfg, &rw, x, b, n, lengths, ref);
  char what[128];
  snprintf(what, sizeof what, "mode %s layout %d heads %zu dim %zu b %zu n %zu",
           pose_attention_mode_string(cfg->mode), (int)cfg->layout, cfg->num_heads, cfg->dim, b,
           n);
  assert_close_f64ref(out, ref, cnt, 2e-5, 1e-5, what);
  free(x), free(out), free(ref);
  pose_attention_free(m);
}

static void module_matches_reference_everywhere(void **state) {
  (void)state;
  const pose_attention_mode modes[] = {POSE_MODE_FULL, POSE_MODE_STRIDED, POSE_MODE_ADAPTIVE};
  const pose_attention_layout layouts[] = {POSE_LAYOUT_QKV_PROJ, POSE_LAYOUT_QUERY_KEY_VALUE};
  const size_t shapes[][4] = {/* dim, heads, batch, seq_len */
                              {8, 1, 1, 1},   {12, 3, 2, 7},  {32, 4, 3, 65},
                              {16, 16, 2, 9}, {30, 5, 1, 130}};
  uint64_t seed = 1;
  for (size_t mi = 0; mi < 3; mi++) {
    for (size_t li = 0; li < 2; li++) {
      for (size_t s = 0; s < 5; s++) {
        pose_attention_config cfg;
        pose_attention_config_init(&cfg);
        cfg.mode = modes[mi];
        cfg.layout = layouts[li];
        cfg.dim = shapes[s][0];
        cfg.num_heads = shapes[s][1];
        cfg.skip_factor = 3;
        cfg.max_seq_len = 40;
        cfg.qkv_bias = (int)(s % 2);
        cfg.seed = seed++;
        module_run_vs_reference(&cfg, shapes[s][2], shapes[s][3], NULL);
      }
    }
  }
}

static void padded_batch_equals_each_sequence_alone(void **state) {
  (void)state;
  const pose_attention_mode modes[] = {POSE_MODE_FULL, POSE_MODE_STRIDED, POSE_MODE_ADAPTIVE};
  for (size_t mi = 0; mi < 3; mi++) {
    pose_attention_config cfg;
    pose_attention_config_init(&cfg);
    cfg.mode = modes[mi];
    cfg.layout = mi == 0 ? POSE_LAYOUT_QKV_PROJ : POSE_LAYOUT_QUERY_KEY_VALUE;
    cfg.dim = 16;
    cfg.num_heads = 2;
    cfg.skip_factor = 4;
    cfg.max_seq_len = 20; /* adaptive skip changes with the length: 30 -> 15, 9 -> 4 */
    cfg.seed = 42 + mi;
    const size_t b = 4, n = 30, d = 16, lengths[4] = {30, 9, 1, 17};
    pose_attention_module *m = NULL;
    assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
    float *x = test_alloc_f32(b * n * d), *out = test_alloc_f32(b * n * d);
    fill_uniform(x, b * n * d, 5, -1, 1);
    /* Garbage past each length: must never reach a valid row. */
    for (size_t s = 0; s < b; s++) {
      for (size_t i = lengths[s] * d; i < n * d; i++) x[s * n * d + i] = 1e30f;
    }
    assert_int_equal(pose_attention_forward(m, x, b, n, lengths, out, b * n * d), POSE_OK);
    for (size_t s = 0; s < b; s++) {
      size_t len = lengths[s];
      float *alone = test_alloc_f32(len * d);
      assert_int_equal(pose_attention_forward(m, x + s * n * d, 1, len, NULL, alone, len * d),
                       POSE_OK);
      assert_memory_equal(out + s * n * d, alone, len * d * sizeof(float));
      for (size_t i = len * d; i < n * d; i++) assert_true(out[s * n * d + i] == 0.0f);
      free(alone);
    }
    /* And against the reference with lengths. */
    module_run_vs_reference(&cfg, b, n, lengths);
    free(x), free(out);
    pose_attention_free(m);
  }
}

/* ---- creation, configuration and errors ---------------------------------------------------- */

static void seeded_creation_is_reproducible(void **state) {
  (void)state;
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.seed = 1234;
  pose_attention_module *a = NULL, *b = NULL, *c = NULL;
  assert_int_equal(pose_attention_create(&cfg, &a), POSE_OK);
  assert_int_equal(pose_attention_create(&cfg, &b), POSE_OK);
  cfg.seed = 1235;
  assert_int_equal(pose_attention_create(&cfg, &c), POSE_OK);
  const float *wa, *wb, *wc;
  size_t na, nb, nc;
  assert_int_equal(pose_attention_get_weight(a, "key.weight", &wa, &na), POSE_OK);
  assert_int_equal(pose_attention_get_weight(b, "key.weight", &wb, &nb), POSE_OK);
  assert_int_equal(pose_attention_get_weight(c, "key.weight", &wc, &nc), POSE_OK);
  assert_int_equal(na, 64 * 64);
  assert_memory_equal(wa, wb, na * sizeof(float));
  assert_memory_not_equal(wa, wc, na * sizeof(float));
  /* nn.Linear's default bound 1/sqrt(in_features), and actually spread over it. */
  float lo = 1, hi = -1;
  for (size_t i = 0; i < na; i++) lo = fminf(lo, wa[i]), hi = fmaxf(hi, wa[i]);
  assert_true(lo >= -0.125f && hi < 0.125f && lo < -0.12f && hi > 0.12f);
  pose_attention_free(a), pose_attention_free(b), pose_attention_free(c);
}

static void config_round_trip_and_defaults(void **state) {
  (void)state;
  pose_attention_config cfg, got;
  pose_attention_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof cfg);
  assert_int_equal(cfg.mode, POSE_MODE_STRIDED);
  assert_int_equal(cfg.layout, POSE_LAYOUT_QUERY_KEY_VALUE);
  cfg.mode = POSE_MODE_ADAPTIVE;
  cfg.max_seq_len = 100;
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
  pose_attention_config_init(&got);
  assert_int_equal(pose_attention_get_config(m, &got), POSE_OK);
  assert_int_equal(got.mode, POSE_MODE_ADAPTIVE);
  assert_int_equal(got.max_seq_len, 100);
  size_t k;
  assert_int_equal(pose_attention_skip_for(m, 5, &k), POSE_OK);
  assert_int_equal(k, 1);
  assert_int_equal(pose_attention_skip_for(m, 35, &k), POSE_OK);
  assert_int_equal(k, 3);
  assert_int_equal(pose_attention_skip_for(m, 0, &k), POSE_ERR_INVALID_ARGUMENT);
  const float *data;
  size_t count;
  assert_int_equal(pose_attention_get_weight(m, "qkv.weight", &data, &count), POSE_ERR_WEIGHTS);
  CONTAINS("qkv.weight");
  got.struct_size = 4;
  assert_int_equal(pose_attention_get_config(m, &got), POSE_ERR_INVALID_ARGUMENT);
  pose_attention_free(m);
  pose_attention_free(NULL);
  assert_string_equal(pose_attention_mode_string(POSE_MODE_FULL), "full");
  assert_null(pose_attention_mode_string((pose_attention_mode)7));
}

static void bad_configs_are_named(void **state) {
  (void)state;
  pose_attention_module *m = (pose_attention_module *)1;
  pose_attention_config cfg;

  pose_attention_config_init(&cfg);
  cfg.struct_size = 8;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  assert_null(m);
  CONTAINS("struct_size");

  pose_attention_config_init(&cfg);
  cfg.dim = 0;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("dim is 0");

  pose_attention_config_init(&cfg);
  cfg.num_heads = 3; /* 64 % 3 != 0 */
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("num_heads");

  pose_attention_config_init(&cfg);
  cfg.num_heads = 0;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);

  pose_attention_config_init(&cfg);
  cfg.skip_factor = 0;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("skip_factor");

  pose_attention_config_init(&cfg);
  cfg.mode = POSE_MODE_ADAPTIVE;
  cfg.max_seq_len = 9; /* the seed divides by max_seq_len // 10 == 0 */
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("max_seq_len");

  pose_attention_config_init(&cfg);
  cfg.mode = (pose_attention_mode)9;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("mode");

  pose_attention_config_init(&cfg);
  cfg.layout = (pose_attention_layout)9;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("layout");

  pose_attention_config_init(&cfg);
  cfg.scale = NAN;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("scale");

  pose_attention_config_init(&cfg);
  cfg.dim = (size_t)1 << 40;
  cfg.num_heads = 1;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_ERR_SIZE_OVERFLOW);

  assert_int_equal(pose_attention_create(NULL, &m), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_create(&cfg, NULL), POSE_ERR_INVALID_ARGUMENT);
}

static void weights_are_checked_strictly(void **state) {
  (void)state;
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.dim = 4;
  float w16[16] = {0}, b4[4] = {0};
  pose_weight good[6] = {{"query.weight", w16, 16}, {"query.bias", b4, 4},
                         {"key.weight", w16, 16},   {"key.bias", b4, 4},
                         {"value.weight", w16, 16}, {"value.bias", b4, 4}};
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create_from_weights(&cfg, good, 6, &m), POSE_OK);
  pose_attention_free(m);

  pose_weight w[7];
  memcpy(w, good, sizeof good);
  assert_int_equal(pose_attention_create_from_weights(&cfg, w, 5, &m), POSE_ERR_WEIGHTS);
  assert_null(m);
  CONTAINS("\"value.bias\" is missing");

  w[6] = (pose_weight){"proj.weight", w16, 16};
  assert_int_equal(pose_attention_create_from_weights(&cfg, w, 7, &m), POSE_ERR_WEIGHTS);
  CONTAINS("unexpected tensor \"proj.weight\"");

  w[6] = (pose_weight){"key.bias", b4, 4};
  assert_int_equal(pose_attention_create_from_weights(&cfg, w, 7, &m), POSE_ERR_WEIGHTS);
  CONTAINS("\"key.bias\" given twice");

  memcpy(w, good, sizeof good);
  w[2].count = 15;
  assert_int_equal(pose_attention_create_from_weights(&cfg, w, 6, &m), POSE_ERR_WEIGHTS);
  CONTAINS("\"key.weight\" has 15 elements, expected 16");

  memcpy(w, good, sizeof good);
  w[3].data = NULL;
  assert_int_equal(pose_attention_create_from_weights(&cfg, w, 6, &m), POSE_ERR_INVALID_ARGUMENT);
  w[3] = good[3];
  w[1].name = NULL;
  assert_int_equal(pose_attention_create_from_weights(&cfg, w, 6, &m), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_create_from_weights(&cfg, NULL, 6, &m),
                   POSE_ERR_INVALID_ARGUMENT);

  /* The fused layout: qkv.bias only when qkv_bias is set. */
  cfg.layout = POSE_LAYOUT_QKV_PROJ;
  float w48[48] = {0}, b12[12] = {0};
  pose_weight fused[4] = {{"qkv.weight", w48, 48}, {"proj.weight", w16, 16},
                          {"proj.bias", b4, 4},    {"qkv.bias", b12, 12}};
  assert_int_equal(pose_attention_create_from_weights(&cfg, fused, 3, &m), POSE_OK);
  pose_attention_free(m);
  assert_int_equal(pose_attention_create_from_weights(&cfg, fused, 4, &m), POSE_ERR_WEIGHTS);
  cfg.qkv_bias = 1;
  assert_int_equal(pose_attention_create_from_weights(&cfg, fused, 4, &m), POSE_OK);
  pose_attention_free(m);
}

static void forward_errors(void **state) {
  (void)state;
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.dim = 4;
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
  float x[12] = {0}, out[12] = {0};
  size_t bad_len[1] = {4}, zero_len[1] = {0};
  assert_int_equal(pose_attention_forward(NULL, x, 1, 3, NULL, out, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_forward(m, NULL, 1, 3, NULL, out, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_forward(m, x, 1, 3, NULL, NULL, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_forward(m, x, 0, 3, NULL, out, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_forward(m, x, 1, 0, NULL, out, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_forward(m, x, 1, 3, NULL, out, 11), POSE_ERR_BUFFER_TOO_SMALL);
  CONTAINS("out_count is 11 elements, need 12");
  assert_int_equal(pose_attention_forward(m, x, 1, 3, bad_len, out, 12),
                   POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("lengths[0] is 4");
  assert_int_equal(pose_attention_forward(m, x, 1, 3, zero_len, out, 12),
                   POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_forward(m, x, SIZE_MAX, 3, NULL, out, 12),
                   POSE_ERR_SIZE_OVERFLOW);
  assert_int_equal(pose_attention_forward(m, x, 1, (size_t)1 << 40, NULL, out, SIZE_MAX),
                   POSE_ERR_SIZE_OVERFLOW);
  for (int i = 0; i < 12; i++) assert_true(out[i] == 0.0f);
  pose_attention_free(m);
}

/* ---- complexity ---------------------------------------------------------------------------- */

static void cost_counts_what_is_attended(void **state) {
  (void)state;
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.dim = 256;
  cfg.skip_factor = 10;
  pose_cost c;
  assert_int_equal(pose_attention_cost(&cfg, 1, 10000, &c), POSE_OK);
  assert_int_equal(c.skip_factor, 10);
  assert_int_equal(c.keys_per_query, 1000);
  assert_int_equal(c.attended_pairs, 10000ull * 1000);
  assert_true(c.attention_flops == 4.0 * 1e7 * 256);
  /* Q on 10000 rows, K and V on the 1000 kept rows. */
  assert_true(c.projection_flops == 2.0 * 10000 * 256 * 256 + 4.0 * 1000 * 256 * 256);
  assert_true(c.total_flops == c.attention_flops + c.projection_flops);

  /* Not divisible: ceil, one more than slide 7's floor. */
  assert_int_equal(pose_attention_cost(&cfg, 2, 1005, &c), POSE_OK);
  assert_int_equal(c.keys_per_query, 101);
  assert_int_equal(c.attended_pairs, 2ull * 1005 * 101);

  cfg.mode = POSE_MODE_FULL;
  cfg.layout = POSE_LAYOUT_QKV_PROJ;
  cfg.num_heads = 8;
  assert_int_equal(pose_attention_cost(&cfg, 1, 1000, &c), POSE_OK);
  assert_int_equal(c.keys_per_query, 1000);
  assert_int_equal(c.attended_pairs, 8ull * 1000 * 1000);
  assert_true(c.attention_flops == 4.0 * 8e6 * 32);
  assert_true(c.projection_flops == 2.0 * 1000 * 256 * 256 * 4);

  cfg.mode = POSE_MODE_ADAPTIVE;
  cfg.max_seq_len = 1000;
  assert_int_equal(pose_attention_cost(&cfg, 1, 500, &c), POSE_OK);
  assert_int_equal(c.skip_factor, 5);
  assert_int_equal(c.keys_per_query, 100);

  assert_int_equal(pose_attention_cost(NULL, 1, 1, &c), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_cost(&cfg, 1, 1, NULL), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_cost(&cfg, 0, 1, &c), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_attention_cost(&cfg, 1, 0, &c), POSE_ERR_INVALID_ARGUMENT);
  cfg.mode = POSE_MODE_FULL;
  assert_int_equal(pose_attention_cost(&cfg, SIZE_MAX, SIZE_MAX, &c), POSE_ERR_SIZE_OVERFLOW);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(functional_matches_pytorch),
      cmocka_unit_test(functional_matches_reference),
      cmocka_unit_test(functional_huge_scores_stay_finite),
      cmocka_unit_test(functional_errors),
      cmocka_unit_test(qkv_proj_matches_pytorch),
      cmocka_unit_test(skipwise_matches_pytorch),
      cmocka_unit_test(adaptive_matches_pytorch),
      cmocka_unit_test(module_matches_reference_everywhere),
      cmocka_unit_test(padded_batch_equals_each_sequence_alone),
      cmocka_unit_test(seeded_creation_is_reproducible),
      cmocka_unit_test(config_round_trip_and_defaults),
      cmocka_unit_test(bad_configs_are_named),
      cmocka_unit_test(weights_are_checked_strictly),
      cmocka_unit_test(forward_errors),
      cmocka_unit_test(cost_counts_what_is_attended),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
