/* pose_model: layers, encoders, summarizer and classifier against PyTorch fixtures (slides 6,
 * 9, 10, 11, padded batches, positional encoding) and the float64 reference, plus errors. */
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

static pose_model_kind kind_of(const char *s) {
  if (strcmp(s, "layer") == 0) return POSE_MODEL_LAYER;
  if (strcmp(s, "encoder") == 0) return POSE_MODEL_ENCODER;
  if (strcmp(s, "summarizer") == 0) return POSE_MODEL_SUMMARIZER;
  return POSE_MODEL_CLASSIFIER;
}

/* The config a fixture's io file describes. */
static void fixture_config(const fx_file *io, pose_model_config *cfg) {
  pose_model_kind kind = kind_of(fx_meta(io, "kind"));
  assert_int_equal(pose_model_config_init(cfg, kind), POSE_OK);
  cfg->dim = fx_meta_size(io, "dim");
  cfg->ff_dim = fx_meta_size(io, "ff_dim");
  cfg->num_layers = fx_meta_size_or(io, "num_layers", 1);
  cfg->skip_factor = fx_meta_size(io, "skip_factor");
  cfg->vocab_size = fx_meta_size_or(io, "vocab_size", 0);
  cfg->input_dim = fx_meta_size_or(io, "input_dim", 0);
  cfg->num_classes = fx_meta_size_or(io, "num_classes", 0);
  cfg->positional_encoding = (int)fx_meta_size_or(io, "positional_encoding", 0);
}

/* Runs a model on a fixture's input; returns the malloc'd output and its count. */
static float *run_fixture(const pose_model *m, const fx_file *io, size_t *count) {
  size_t b = fx_meta_size(io, "batch"), n = fx_meta_size(io, "seq_len"), nl;
  size_t *lengths = fx_lengths(io, &nl);
  assert_int_equal(pose_model_output_count(m, b, n, count), POSE_OK);
  float *out = test_alloc_f32(*count);
  const fx_tensor *in = fx_need(io, "input", 0);
  if (in->i64 != NULL) {
    assert_int_equal(pose_model_forward_tokens(m, in->i64, b, n, lengths, out, *count), POSE_OK);
  } else {
    assert_int_equal(pose_model_forward(m, in->f32, b, n, lengths, out, *count), POSE_OK);
  }
  free(lengths);
  return out;
}

static void check_fixture(const char *cas, const char *weights_suffix) {
  char io_name[96], w_name[96];
  snprintf(io_name, sizeof io_name, "%s.io.safetensors", cas);
  snprintf(w_name, sizeof w_name, "%s.%s.safetensors", cas, weights_suffix);
  fx_file *io = fx_open(io_name), *wf = fx_open(w_name);
  pose_model_config cfg;
  fixture_config(io, &cfg);
  size_t nw, count;
  pose_weight *w = fx_weights(wf, &nw);
  pose_model *m = NULL;
  assert_int_equal(pose_model_create_from_weights(&cfg, w, nw, &m), POSE_OK);
  float *out = run_fixture(m, io, &count);
  assert_close_f32(out, fx_f32(io, "output"), count, io_name);
  free(out), free(w);
  pose_model_free(m);
  fx_close(io), fx_close(wf);
}

static void layers_match_pytorch(void **state) {
  (void)state;
  check_fixture("layer_0", "weights");
  check_fixture("layer_1", "weights");
  check_fixture("layer_2", "weights");
}

static void encoders_match_pytorch(void **state) {
  (void)state;
  check_fixture("encoder_0", "weights");
  check_fixture("encoder_1", "weights");
  check_fixture("encoder_padded", "weights");
}

static void summarizer_matches_pytorch(void **state) {
  (void)state;
  check_fixture("summarizer_0", "weights");
  check_fixture("summarizer_padded", "weights");
  check_fixture("summarizer_pe", "weights");
}

static void classifier_matches_pytorch(void **state) {
  (void)state;
  check_fixture("classifier_0", "weights");
  check_fixture("classifier_padded", "weights");
  check_fixture("classifier_pe", "weights");
}

/* ---- against the float64 reference, with heads, modes and padding ------------------------- */

static void bind_model(const pose_model *m, const pose_model_config *cfg,
                       ref64_model_weights *rw, pose_weight **w_out) {
  size_t n = pose_model_num_weights(m);
  pose_weight *w = calloc(n, sizeof *w);
  assert_non_null(w);
  for (size_t i = 0; i < n; i++) {
    w[i].name = pose_model_weight_name(m, i);
    assert_int_equal(pose_model_get_weight(m, w[i].name, &w[i].data, &w[i].count), POSE_OK);
  }
  ref64_model_bind(cfg, w, n, rw);
  *w_out = w;
}

static void model_vs_reference(pose_model_config *cfg, size_t b, size_t n,
                               const size_t *lengths) {
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(cfg, &m), POSE_OK);
  ref64_model_weights rw;
  pose_weight *w;
  bind_model(m, cfg, &rw, &w);
  size_t count;
  assert_int_equal(pose_model_output_count(m, b, n, &count), POSE_OK);
  assert_int_equal(count, ref64_model_output_count(cfg, b, n));
  float *out = test_alloc_f32(count);
  double *ref = test_alloc_f64(count);
  if (cfg->kind == POSE_MODEL_SUMMARIZER) {
    int64_t *tok = calloc(b * n, sizeof *tok);
    for (size_t i = 0; i < b * n; i++) tok[i] = (int64_t)((i * 7919) % cfg->vocab_size);
    assert_int_equal(pose_model_forward_tokens(m, tok, b, n, lengths, out, count), POSE_OK);
    ref64_model_forward_tokens(cfg, &rw, tok, b, n, lengths, ref);
    free(tok);
  } else {
    size_t width = cfg->kind == POSE_MODEL_CLASSIFIER ? cfg->input_dim : cfg->dim;
    float *x = test_alloc_f32(b * n * width);
    fill_uniform(x, b * n * width, cfg->seed + 3, -1, 1);
    assert_int_equal(pose_model_forward(m, x, b, n, lengths, out, count), POSE_OK);
    ref64_model_forward(cfg, &rw, x, b, n, lengths, ref);
    free(x);
  }
  char what[160];
  snprintf(what, sizeof what, "%s mode %s heads %zu b %zu n %zu",
           pose_model_kind_string(cfg->kind), pose_attention_mode_string(cfg->mode),
           cfg->num_heads, b, n);
  assert_close_f64ref(out, ref, count, 5e-5, 5e-5, what);
  free(out), free(ref), free(w);
  ref64_model_weights_free(&rw);
  pose_model_free(m);
}

static void models_match_reference_in_every_mode(void **state) {
  (void)state;
  const pose_model_kind kinds[] = {POSE_MODEL_LAYER, POSE_MODEL_ENCODER, POSE_MODEL_SUMMARIZER,
                                   POSE_MODEL_CLASSIFIER};
  const pose_attention_mode modes[] = {POSE_MODE_FULL, POSE_MODE_STRIDED, POSE_MODE_ADAPTIVE};
  const size_t lengths[3] = {13, 4, 1};
  uint64_t seed = 100;
  for (size_t k = 0; k < 4; k++) {
    for (size_t mo = 0; mo < 3; mo++) {
      pose_model_config cfg;
      pose_model_config_init(&cfg, kinds[k]);
      cfg.dim = 12;
      cfg.ff_dim = 20;
      cfg.num_layers = kinds[k] == POSE_MODEL_LAYER ? 1 : 2;
      cfg.num_heads = 3;
      cfg.mode = modes[mo];
      cfg.skip_factor = 3;
      cfg.max_seq_len = 20;
      cfg.vocab_size = 29;
      cfg.input_dim = 7;
      cfg.num_classes = 4;
      cfg.positional_encoding = (kinds[k] >= POSE_MODEL_SUMMARIZER) && mo == 1;
      cfg.seed = seed++;
      model_vs_reference(&cfg, 3, 13, NULL);
      model_vs_reference(&cfg, 3, 13, lengths);
    }
  }
}

static void padded_rows_are_zero_and_sequences_independent(void **state) {
  (void)state;
  pose_model_config cfg;
  pose_model_config_init(&cfg, POSE_MODEL_SUMMARIZER);
  cfg.vocab_size = 11, cfg.dim = 8, cfg.ff_dim = 16, cfg.num_layers = 2, cfg.skip_factor = 2;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&cfg, &m), POSE_OK);
  const size_t b = 2, n = 6, lengths[2] = {6, 3};
  int64_t tok[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, -5, 999, 12345}; /* junk past length 3 */
  float out[2 * 6 * 11], alone[3 * 11];
  assert_int_equal(pose_model_forward_tokens(m, tok, b, n, lengths, out, sizeof out / 4), POSE_OK);
  assert_int_equal(pose_model_forward_tokens(m, tok + 6, 1, 3, NULL, alone, 33), POSE_OK);
  assert_memory_equal(out + 66, alone, sizeof alone);
  for (size_t i = 66 + 33; i < 132; i++) assert_true(out[i] == 0.0f);
  pose_model_free(m);
}

/* ---- configuration and errors -------------------------------------------------------------- */

static void config_defaults_are_the_seeds(void **state) {
  (void)state;
  pose_model_config c;
  assert_int_equal(pose_model_config_init(&c, POSE_MODEL_SUMMARIZER), POSE_OK);
  assert_int_equal(c.vocab_size, 30000);
  assert_int_equal(c.dim, 256);
  assert_int_equal(c.ff_dim, 0); /* 4 * dim, following dim */
  assert_int_equal(c.num_layers, 6);
  c.vocab_size = 10, c.dim = 12, c.num_layers = 1;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&c, &m), POSE_OK);
  pose_model_config got = {.struct_size = sizeof got};
  assert_int_equal(pose_model_get_config(m, &got), POSE_OK);
  assert_int_equal(got.ff_dim, 48);
  const float *w;
  size_t n;
  assert_int_equal(pose_model_get_weight(m, "pose_encoder.layers.0.ff.0.weight", &w, &n), POSE_OK);
  assert_int_equal(n, 48 * 12);
  pose_model_free(m);
  assert_int_equal(c.skip_factor, 2);
  assert_int_equal(c.positional_encoding, 0);
  assert_int_equal(pose_model_config_init(&c, POSE_MODEL_CLASSIFIER), POSE_OK);
  assert_int_equal(c.input_dim, 128);
  assert_int_equal(c.num_layers, 4);
  assert_int_equal(c.num_classes, 10);
  assert_int_equal(pose_model_config_init(&c, (pose_model_kind)0), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_config_init(NULL, POSE_MODEL_LAYER), POSE_ERR_INVALID_ARGUMENT);
  assert_string_equal(pose_model_kind_string(POSE_MODEL_ENCODER), "encoder");
  assert_null(pose_model_kind_string((pose_model_kind)77));
}

static void layer_info_and_weights_are_visible(void **state) {
  (void)state;
  pose_model_config c;
  pose_model_config_init(&c, POSE_MODEL_ENCODER);
  c.dim = 16, c.ff_dim = 32, c.num_layers = 3, c.num_heads = 4, c.skip_factor = 5;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&c, &m), POSE_OK);
  pose_layer_info info = {.struct_size = sizeof info};
  assert_int_equal(pose_model_layer_info(m, 2, &info), POSE_OK);
  assert_int_equal(info.mode, POSE_MODE_STRIDED);
  assert_int_equal(info.skip_factor, 5);
  assert_int_equal(info.num_heads, 4);
  assert_int_equal(info.ff_dim, 32);
  assert_int_equal(pose_model_layer_info(m, 3, &info), POSE_ERR_INVALID_ARGUMENT);
  info.struct_size = 0;
  assert_int_equal(pose_model_layer_info(m, 0, &info), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_num_weights(m), 3 * 14);
  assert_string_equal(pose_model_weight_name(m, 0), "layers.0.attn.query.weight");
  assert_string_equal(pose_model_weight_name(m, 41), "layers.2.norm2.bias");
  assert_null(pose_model_weight_name(m, 42));
  const float *d;
  size_t n;
  assert_int_equal(pose_model_get_weight(m, "layers.1.ff.0.weight", &d, &n), POSE_OK);
  assert_int_equal(n, 32 * 16);
  assert_int_equal(pose_model_get_weight(m, "layers.1.norm1.weight", &d, &n), POSE_OK);
  assert_true(d[0] == 1.0f && d[15] == 1.0f); /* LayerNorm starts at 1 and 0 */
  assert_int_equal(pose_model_get_weight(m, "nope", &d, &n), POSE_ERR_WEIGHTS);
  CONTAINS("nope");
  pose_model_config got = {.struct_size = sizeof got};
  assert_int_equal(pose_model_get_config(m, &got), POSE_OK);
  assert_int_equal(got.kind, POSE_MODEL_ENCODER);
  assert_int_equal(got.num_heads, 4);
  pose_model_free(m);
  pose_model_free(NULL);
}

static void bad_model_configs_are_named(void **state) {
  (void)state;
  pose_model *m = (pose_model *)1;
  pose_model_config c;
#define EXPECT_BAD(kind, stmt, text)                                   \
  do {                                                                 \
    pose_model_config_init(&c, kind);                                  \
    stmt;                                                              \
    assert_int_equal(pose_model_create(&c, &m), POSE_ERR_INVALID_ARGUMENT); \
    assert_null(m);                                                    \
    CONTAINS(text);                                                    \
  } while (0)
  EXPECT_BAD(POSE_MODEL_LAYER, c.struct_size = 3, "struct_size");
  EXPECT_BAD(POSE_MODEL_LAYER, c.kind = (pose_model_kind)9, "kind");
  EXPECT_BAD(POSE_MODEL_LAYER, c.dim = 0, "dim");
  EXPECT_BAD(POSE_MODEL_LAYER, c.ff_dim = (size_t)1 << 30, "ff_dim");
  EXPECT_BAD(POSE_MODEL_LAYER, c.num_layers = 2, "num_layers");
  EXPECT_BAD(POSE_MODEL_ENCODER, c.num_layers = 0, "num_layers");
  EXPECT_BAD(POSE_MODEL_ENCODER, c.num_heads = 7, "num_heads");
  EXPECT_BAD(POSE_MODEL_ENCODER, c.mode = (pose_attention_mode)6, "mode");
  EXPECT_BAD(POSE_MODEL_ENCODER, c.skip_factor = 0, "skip_factor");
  EXPECT_BAD(POSE_MODEL_ENCODER, (c.mode = POSE_MODE_ADAPTIVE, c.max_seq_len = 5), "max_seq_len");
  EXPECT_BAD(POSE_MODEL_SUMMARIZER, c.vocab_size = 0, "vocab_size");
  EXPECT_BAD(POSE_MODEL_CLASSIFIER, c.input_dim = 0, "input_dim");
  EXPECT_BAD(POSE_MODEL_CLASSIFIER, c.num_classes = 0, "num_classes");
  EXPECT_BAD(POSE_MODEL_ENCODER, c.positional_encoding = 1, "positional_encoding");
  EXPECT_BAD(POSE_MODEL_CLASSIFIER, c.positional_encoding = 3, "positional_encoding");
  EXPECT_BAD(POSE_MODEL_CLASSIFIER, (c.positional_encoding = 1, c.dim = 15, c.num_heads = 1),
             "even");
  EXPECT_BAD(POSE_MODEL_LAYER, c.layer_norm_eps = -1.0f, "layer_norm_eps");
  EXPECT_BAD(POSE_MODEL_LAYER, c.dim = (size_t)1 << 40, "dim");
#undef EXPECT_BAD
  assert_int_equal(pose_model_create(NULL, &m), POSE_ERR_INVALID_ARGUMENT);
  pose_model_config_init(&c, POSE_MODEL_LAYER);
  assert_int_equal(pose_model_create(&c, NULL), POSE_ERR_INVALID_ARGUMENT);
}

static void forward_errors(void **state) {
  (void)state;
  pose_model_config c;
  pose_model_config_init(&c, POSE_MODEL_SUMMARIZER);
  c.vocab_size = 10, c.dim = 4, c.ff_dim = 8, c.num_layers = 1;
  pose_model *s = NULL, *e = NULL;
  assert_int_equal(pose_model_create(&c, &s), POSE_OK);
  pose_model_config_init(&c, POSE_MODEL_ENCODER);
  c.dim = 4, c.ff_dim = 8, c.num_layers = 1;
  assert_int_equal(pose_model_create(&c, &e), POSE_OK);
  int64_t tok[3] = {1, 2, 3};
  float x[12] = {0}, out[30] = {0};
  size_t len_bad[1] = {4};
  assert_int_equal(pose_model_forward_tokens(s, tok, 1, 3, NULL, out, 30), POSE_OK);
  tok[1] = 10;
  assert_int_equal(pose_model_forward_tokens(s, tok, 1, 3, NULL, out, 30),
                   POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("tokens[0][1] is 10");
  tok[1] = -1;
  assert_int_equal(pose_model_forward_tokens(s, tok, 1, 3, NULL, out, 30),
                   POSE_ERR_INVALID_ARGUMENT);
  tok[1] = 1;
  assert_int_equal(pose_model_forward_tokens(s, tok, 1, 3, NULL, out, 29),
                   POSE_ERR_BUFFER_TOO_SMALL);
  assert_int_equal(pose_model_forward_tokens(s, tok, 1, 3, len_bad, out, 30),
                   POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_forward_tokens(s, NULL, 1, 3, NULL, out, 30),
                   POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_forward_tokens(e, tok, 1, 3, NULL, out, 30),
                   POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("pose_model_forward");
  assert_int_equal(pose_model_forward(s, x, 1, 3, NULL, out, 30), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("pose_model_forward_tokens");
  assert_int_equal(pose_model_forward(e, x, 0, 3, NULL, out, 30), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_forward(e, x, 1, 0, NULL, out, 30), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_forward(e, x, 1, 3, NULL, NULL, 30), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_forward(NULL, x, 1, 3, NULL, out, 30), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_forward(e, x, SIZE_MAX, 3, NULL, out, 30), POSE_ERR_SIZE_OVERFLOW);
  size_t count;
  assert_int_equal(pose_model_output_count(e, SIZE_MAX, 2, &count), POSE_ERR_SIZE_OVERFLOW);
  assert_int_equal(pose_model_output_count(NULL, 1, 2, &count), POSE_ERR_INVALID_ARGUMENT);
  pose_model_free(s);
  pose_model_free(e);
}

static void create_from_weights_is_strict(void **state) {
  (void)state;
  fx_file *wf = fx_open("layer_0.weights.safetensors");
  size_t nw;
  pose_weight *w = fx_weights(wf, &nw);
  pose_model_config c;
  pose_model_config_init(&c, POSE_MODEL_LAYER);
  c.dim = 16, c.ff_dim = 64;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create_from_weights(&c, w, nw - 1, &m), POSE_ERR_WEIGHTS);
  assert_null(m);
  CONTAINS("missing");
  c.ff_dim = 32;
  assert_int_equal(pose_model_create_from_weights(&c, w, nw, &m), POSE_ERR_WEIGHTS);
  CONTAINS("\"ff.0."); /* weight or bias, whichever the file lists first */
  c.ff_dim = 64;
  w[0].name = "attn.query.wieght";
  assert_int_equal(pose_model_create_from_weights(&c, w, nw, &m), POSE_ERR_WEIGHTS);
  CONTAINS("attn.query.wieght");
  free(w);
  fx_close(wf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(layers_match_pytorch),
      cmocka_unit_test(encoders_match_pytorch),
      cmocka_unit_test(summarizer_matches_pytorch),
      cmocka_unit_test(classifier_matches_pytorch),
      cmocka_unit_test(models_match_reference_in_every_mode),
      cmocka_unit_test(padded_rows_are_zero_and_sequences_independent),
      cmocka_unit_test(config_defaults_are_the_seeds),
      cmocka_unit_test(layer_info_and_weights_are_visible),
      cmocka_unit_test(bad_model_configs_are_named),
      cmocka_unit_test(forward_errors),
      cmocka_unit_test(create_from_weights_is_strict),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
