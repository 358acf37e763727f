/* Model files: safetensors written by PyTorch load and match its outputs (F32, F16, BF16, with
 * and without metadata); libpose's own files round-trip bit for bit; every model-level error
 * is named; failed loads and saves leave nothing behind. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"
#include "pose.h"
#include "pose_internal.h"
#include "testutil.h"

#define CONTAINS(s) assert_non_null(strstr(pose_last_error(), s))

static char *fixture_path(const char *name) {
  size_t n = strlen(POSE_FIXTURE_DIR) + strlen(name) + 2;
  char *p = malloc(n);
  snprintf(p, n, "%s/%s", POSE_FIXTURE_DIR, name);
  return p;
}

/* Loads weights file `wname` (opts may be NULL) and checks it against io file `ioname`. */
static void load_and_compare(const char *wname, const char *ioname,
                             const pose_load_options *opts) {
  char *path = fixture_path(wname);
  pose_model *m = NULL;
  pose_status st = pose_model_load(path, opts, &m);
  if (st != POSE_OK) test_failf("%s: %s", wname, pose_last_error());
  fx_file *io = fx_open(ioname);
  size_t b = fx_meta_size(io, "batch"), n = fx_meta_size(io, "seq_len"), nl, count;
  size_t *lengths = fx_lengths(io, &nl);
  assert_int_equal(pose_model_output_count(m, b, n, &count), POSE_OK);
  float *out = test_alloc_f32(count);
  const fx_tensor *in = fx_need(io, "input", 0);
  if (in->i64 != NULL) {
    assert_int_equal(pose_model_forward_tokens(m, in->i64, b, n, lengths, out, count), POSE_OK);
  } else {
    assert_int_equal(pose_model_forward(m, in->f32, b, n, lengths, out, count), POSE_OK);
  }
  assert_close_f32(out, fx_f32(io, "output"), count, ioname);
  free(out), free(lengths), free(path);
  fx_close(io);
  pose_model_free(m);
}

static pose_load_options opts_skip(size_t k, int pe) {
  pose_load_options o;
  pose_load_options_init(&o);
  o.skip_factor = k;
  o.positional_encoding = pe;
  return o;
}

static void pytorch_files_without_metadata_load(void **state) {
  (void)state;
  pose_load_options o = opts_skip(2, 0);
  load_and_compare("layer_0.weights.safetensors", "layer_0.io.safetensors", &o);
  load_and_compare("encoder_0.weights.safetensors", "encoder_0.io.safetensors", &o);
  load_and_compare("encoder_padded.weights.safetensors", "encoder_padded.io.safetensors", &o);
  load_and_compare("classifier_0.weights.safetensors", "classifier_0.io.safetensors", &o);
  load_and_compare("classifier_padded.weights.safetensors", "classifier_padded.io.safetensors",
                   &o);
  o = opts_skip(3, 0);
  load_and_compare("layer_1.weights.safetensors", "layer_1.io.safetensors", &o);
  load_and_compare("summarizer_0.weights.safetensors", "summarizer_0.io.safetensors", &o);
  load_and_compare("summarizer_padded.weights.safetensors", "summarizer_padded.io.safetensors",
                   &o);
  o = opts_skip(4, 0);
  load_and_compare("encoder_1.weights.safetensors", "encoder_1.io.safetensors", &o);
  /* Positional encoding cannot be seen in a state_dict: the caller says so. */
  o = opts_skip(3, 1);
  load_and_compare("summarizer_pe.weights.safetensors", "summarizer_pe.io.safetensors", &o);
  o = opts_skip(2, 1);
  load_and_compare("classifier_pe.weights.safetensors", "classifier_pe.io.safetensors", &o);
}

/* A state_dict file says nothing about window, causal, levels, top_m or num_global: the options
 * do. */
static void options_give_the_newer_fields(void **state) {
  (void)state;
  char *path = fixture_path("encoder_0.weights.safetensors");
  pose_load_options o = opts_skip(2, 0);
  o.mode = POSE_MODE_HIERARCHICAL;
  o.causal = 1;
  o.levels = 3;
  pose_model *m = NULL;
  assert_int_equal(pose_model_load(path, &o, &m), POSE_OK);
  pose_model_config c = {.struct_size = sizeof c};
  assert_int_equal(pose_model_get_config(m, &c), POSE_OK);
  assert_int_equal(c.mode, POSE_MODE_HIERARCHICAL);
  assert_int_equal(c.causal, 1);
  assert_int_equal(c.levels, 3);
  pose_model_free(m);
  o.mode = POSE_MODE_IMPORTANCE;
  o.top_m = 7;
  o.window = 4;
  assert_int_equal(pose_model_load(path, &o, &m), POSE_OK);
  assert_int_equal(pose_model_get_config(m, &c), POSE_OK);
  assert_int_equal(c.mode, POSE_MODE_IMPORTANCE);
  assert_int_equal(c.top_m, 7);
  assert_int_equal(c.window, 4);
  pose_model_free(m);
  m = NULL;
  o.mode = POSE_MODE_HIERARCHICAL;
  o.levels = 0;
  assert_int_equal(pose_model_load(path, &o, &m), POSE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(pose_last_error(), "levels"));
  assert_null(m);
  o.mode = POSE_MODE_LOCAL_STRIDED;
  o.window = 2;
  o.num_global = 5;
  assert_int_equal(pose_model_load(path, &o, &m), POSE_OK);
  assert_int_equal(pose_model_get_config(m, &c), POSE_OK);
  assert_int_equal(c.mode, POSE_MODE_LOCAL_STRIDED);
  assert_int_equal(c.num_global, 5);
  pose_model_free(m);
  m = NULL;
  o.mode = POSE_MODE_STRIDED;
  assert_int_equal(pose_model_load(path, &o, &m), POSE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(pose_last_error(), "num_global"));
  assert_null(m);
  free(path);
}

static void metadata_says_what_shapes_cannot(void **state) {
  (void)state;
  load_and_compare("encoder_0.weights_meta.safetensors", "encoder_0.io.safetensors", NULL);
  load_and_compare("summarizer_0.weights_meta.safetensors", "summarizer_0.io.safetensors", NULL);
  load_and_compare("classifier_0.weights_meta.safetensors", "classifier_0.io.safetensors", NULL);
  load_and_compare("layer_0.weights_meta.safetensors", "layer_0.io.safetensors", NULL);
  /* The file's skip factor wins over the options'. */
  pose_load_options o = opts_skip(7, 0);
  load_and_compare("encoder_0.weights_meta.safetensors", "encoder_0.io.safetensors", &o);
}

static void half_precision_files_convert_on_load(void **state) {
  (void)state;
  pose_load_options o = opts_skip(3, 0);
  load_and_compare("summarizer_0_f16.weights.safetensors", "summarizer_0_f16.io.safetensors", &o);
  load_and_compare("summarizer_0_bf16.weights.safetensors", "summarizer_0_bf16.io.safetensors",
                   &o);
  o = opts_skip(2, 0);
  load_and_compare("classifier_0_f16.weights.safetensors", "classifier_0_f16.io.safetensors", &o);
  load_and_compare("classifier_0_bf16.weights.safetensors", "classifier_0_bf16.io.safetensors",
                   &o);
}

static void missing_skip_factor_is_asked_for(void **state) {
  (void)state;
  char *path = fixture_path("encoder_0.weights.safetensors");
  pose_model *m = (pose_model *)1;
  assert_int_equal(pose_model_load(path, NULL, &m), POSE_ERR_INVALID_ARGUMENT);
  assert_null(m);
  CONTAINS("skip_factor");
  /* Full attention needs no skip factor. */
  pose_load_options o;
  pose_load_options_init(&o);
  o.mode = POSE_MODE_FULL;
  assert_int_equal(pose_model_load(path, &o, &m), POSE_OK);
  pose_layer_info info = {.struct_size = sizeof info};
  assert_int_equal(pose_model_layer_info(m, 0, &info), POSE_OK);
  assert_int_equal(info.mode, POSE_MODE_FULL);
  pose_model_free(m);
  o.struct_size = 2;
  assert_int_equal(pose_model_load(path, &o, &m), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("struct_size");
  free(path);
}

/* ---- libpose's own files -------------------------------------------------------------------- */

static pose_model *make_model(pose_model_kind kind, uint64_t seed) {
  pose_model_config c;
  pose_model_config_init(&c, kind);
  c.dim = 8, c.ff_dim = 12, c.num_layers = kind == POSE_MODEL_LAYER ? 1 : 2;
  c.num_heads = 2, c.skip_factor = 3, c.vocab_size = 17, c.input_dim = 5, c.num_classes = 4;
  c.mode = kind == POSE_MODEL_ENCODER ? POSE_MODE_ADAPTIVE : POSE_MODE_STRIDED;
  c.max_seq_len = 30;
  c.positional_encoding = kind == POSE_MODEL_CLASSIFIER;
  c.layer_norm_eps = 1e-6f;
  c.seed = seed;
  pose_model *m = NULL;
  assert_int_equal(pose_model_create(&c, &m), POSE_OK);
  return m;
}

static void assert_same_model(const pose_model *a, const pose_model *b) {
  pose_model_config ca, cb;
  pose_model_config_init(&ca, POSE_MODEL_LAYER);
  pose_model_config_init(&cb, POSE_MODEL_LAYER);
  assert_int_equal(pose_model_get_config(a, &ca), POSE_OK);
  assert_int_equal(pose_model_get_config(b, &cb), POSE_OK);
  ca.seed = cb.seed = 0; /* the seed is not part of a file */
  assert_memory_equal(&ca, &cb, sizeof ca);
  assert_int_equal(pose_model_num_weights(a), pose_model_num_weights(b));
  for (size_t i = 0; i < pose_model_num_weights(a); i++) {
    const char *name = pose_model_weight_name(a, i);
    assert_string_equal(name, pose_model_weight_name(b, i));
    const float *da, *db;
    size_t na, nb;
    assert_int_equal(pose_model_get_weight(a, name, &da, &na), POSE_OK);
    assert_int_equal(pose_model_get_weight(b, name, &db, &nb), POSE_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na * sizeof(float));
  }
}

static void save_load_round_trip_is_bit_exact(void **state) {
  (void)state;
  for (int k = POSE_MODEL_LAYER; k <= POSE_MODEL_CLASSIFIER; k++) {
    pose_model *m = make_model((pose_model_kind)k, 10 + (uint64_t)k);
    char *path = test_tmp_path("round_trip.safetensors");
    assert_int_equal(pose_model_save(m, path), POSE_OK);
    pose_model *back = NULL;
    assert_int_equal(pose_model_load(path, NULL, &back), POSE_OK);
    assert_same_model(m, back);

    /* The same bytes load from memory. */
    fx_file *f = fx_open_path(path);
    assert_string_equal(fx_meta(f, "kind"), pose_model_kind_string((pose_model_kind)k));
    assert_non_null(fx_meta(f, "skip_factor"));
    assert_string_equal(fx_meta(f, "pose.version"), POSE_VERSION_STRING);
    /* The test-side reader sees state_dict names and F32 tensors of the right shapes. */
    for (size_t i = 0; i < pose_model_num_weights(m); i++) {
      const char *name = pose_model_weight_name(m, i);
      const fx_tensor *t = fx_get(f, name);
      assert_non_null(t);
      assert_string_equal(t->dtype, "F32");
      const float *data;
      size_t count;
      pose_model_get_weight(m, name, &data, &count);
      assert_int_equal(t->count, count);
      assert_memory_equal(t->f32, data, count * sizeof(float));
    }
    fx_close(f);
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    rewind(fp);
    void *bytes = malloc((size_t)size);
    assert_int_equal(fread(bytes, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    pose_model *mem = NULL;
    assert_int_equal(pose_model_load_memory(bytes, (size_t)size, NULL, &mem), POSE_OK);
    assert_same_model(m, mem);
    free(bytes);
    pose_model_free(mem);
    pose_model_free(back);
    pose_model_free(m);
    free(path);
  }
}

static void failed_save_keeps_the_old_file(void **state) {
  (void)state;
  pose_model *a = make_model(POSE_MODEL_LAYER, 1), *b = make_model(POSE_MODEL_LAYER, 2);
  char *path = test_tmp_path("keep.safetensors");
  assert_int_equal(pose_model_save(a, path), POSE_OK);
  /* Over an existing file: replaced whole. */
  assert_int_equal(pose_model_save(b, path), POSE_OK);
  pose_model *back = NULL;
  assert_int_equal(pose_model_load(path, NULL, &back), POSE_OK);
  assert_same_model(b, back);
  pose_model_free(back);
  /* Into a directory that does not exist: an I/O error naming the path. */
  char *bad = test_tmp_path("no/such/dir/x.safetensors");
  assert_int_equal(pose_model_save(a, bad), POSE_ERR_IO);
  CONTAINS("no/such/dir");
  /* Over a directory: the rename fails, the directory is untouched, no temp file is left. */
  char *dir = test_tmp_path("a_directory");
  assert_int_equal(mkdir(dir, 0700), 0);
  assert_int_equal(pose_model_save(a, dir), POSE_ERR_IO);
  struct stat sb;
  assert_int_equal(stat(dir, &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));
  char *tmpdir = test_tmp_path("");
  char cmd[512];
  snprintf(cmd, sizeof cmd, "ls '%s' | grep -c tmp- >/dev/null", tmpdir);
  assert_int_not_equal(system(cmd), 0); /* grep found no temp file */
  free(tmpdir), free(dir), free(bad), free(path);
  pose_model_free(a), pose_model_free(b);
  assert_int_equal(pose_model_save(NULL, "x"), POSE_ERR_INVALID_ARGUMENT);
}

/* ---- model-level errors in well-formed files ------------------------------------------------ */

/* Writes a model's tensors to memory with edits: drop tensor `drop`, replace the shape of
 * `reshape`, add `extra`, and the given metadata. Loads it and returns the status. */
static pose_status load_edited(const pose_model *m, const char *drop, const char *reshape,
                               const char *extra, const char *const *meta, size_t num_meta,
                               const pose_load_options *opts) {
  size_t n = pose_model_num_weights(m), used = 0;
  pose_st_out *t = calloc(n + 1, sizeof *t);
  static float extra_data[4];
  for (size_t i = 0; i < n; i++) {
    const char *name = pose_model_weight_name(m, i);
    if (drop != NULL && strcmp(name, drop) == 0) continue;
    const float *data;
    size_t count;
    pose_model_get_weight(m, name, &data, &count);
    t[used].name = name;
    t[used].data = data;
    t[used].ndim = 1;
    t[used].shape[0] = count;
    if (strstr(name, ".weight") != NULL && strstr(name, "norm") == NULL) {
      /* 2-D Linear / Embedding weights: find rows from the bias or config. */
      pose_model_config c;
      pose_model_config_init(&c, POSE_MODEL_LAYER);
      pose_model_get_config(m, &c);
      size_t cols = strstr(name, "ff.2") ? c.ff_dim
                    : strstr(name, "feature_extractor") ? c.input_dim
                                                        : c.dim;
      t[used].ndim = 2;
      t[used].shape[0] = count / cols;
      t[used].shape[1] = cols;
    }
    if (reshape != NULL && strcmp(name, reshape) == 0) {
      t[used].ndim = 2;
      t[used].shape[0] = 1;
      t[used].shape[1] = count;
    }
    used++;
  }
  if (extra != NULL) t[used++] = (pose_st_out){extra, extra_data, 1, {4}};
  void *bytes;
  size_t size;
  assert_int_equal(pose_st_write_memory(t, used, meta, num_meta, &bytes, &size), POSE_OK);
  pose_model *out = (pose_model *)1;
  pose_status st = pose_model_load_memory(bytes, size, opts, &out);
  if (st != POSE_OK) assert_null(out);
  pose_model_free(st == POSE_OK ? out : NULL);
  pose_free(bytes);
  free(t);
  return st;
}

static void model_level_errors_are_named(void **state) {
  (void)state;
  pose_model *m = make_model(POSE_MODEL_SUMMARIZER, 3);
  pose_load_options o = opts_skip(3, 0);
  /* The unedited file loads, so each failure below is the edit's. */
  assert_int_equal(load_edited(m, NULL, NULL, NULL, NULL, 0, &o), POSE_OK);
  assert_int_equal(load_edited(m, "pose_encoder.layers.1.ff.2.bias", NULL, NULL, NULL, 0, &o),
                   POSE_ERR_WEIGHTS);
  CONTAINS("\"pose_encoder.layers.1.ff.2.bias\" is missing");
  assert_int_equal(load_edited(m, NULL, "pose_encoder.layers.0.attn.key.weight", NULL, NULL, 0,
                               &o),
                   POSE_ERR_WEIGHTS);
  CONTAINS("\"pose_encoder.layers.0.attn.key.weight\" has shape [1, 64], expected [8, 8]");
  assert_int_equal(load_edited(m, NULL, NULL, "pos_encoder.pe", NULL, 0, &o), POSE_ERR_WEIGHTS);
  CONTAINS("unexpected tensor \"pos_encoder.pe\"");
  assert_int_equal(load_edited(m, "embedding.weight", NULL, NULL, NULL, 0, &o), POSE_ERR_WEIGHTS);
  CONTAINS("embedding.weight"); /* now it looks like nothing: no way to tell the kind */

  const char *bad_kind[] = {"kind", "transformer"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, bad_kind, 1, &o), POSE_ERR_FORMAT);
  CONTAINS("\"transformer\"");
  const char *bad_num[] = {"kind", "summarizer", "skip_factor", "3x"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, bad_num, 2, &o), POSE_ERR_FORMAT);
  CONTAINS("\"skip_factor\" is \"3x\"");
  const char *neg[] = {"kind", "summarizer", "num_layers", "-1"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, neg, 2, &o), POSE_ERR_FORMAT);
  const char *huge[] = {"kind", "summarizer", "vocab_size", "99999999999999999999999"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, huge, 2, &o), POSE_ERR_FORMAT);
  const char *wrong_size[] = {"kind", "summarizer", "vocab_size", "18"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, wrong_size, 2, &o), POSE_ERR_WEIGHTS);
  CONTAINS("embedding.weight");
  const char *zero_skip[] = {"kind", "summarizer", "skip_factor", "0"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, zero_skip, 2, &o), POSE_ERR_INVALID_ARGUMENT);
  const char *bad_mode[] = {"kind", "summarizer", "pose.mode", "sideways"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, bad_mode, 2, &o), POSE_ERR_FORMAT);
  CONTAINS("sideways");
  const char *bad_eps[] = {"kind", "summarizer", "pose.layer_norm_eps", "nan"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, bad_eps, 2, &o), POSE_ERR_FORMAT);
  const char *wrong_kind[] = {"kind", "classifier"};
  assert_int_equal(load_edited(m, NULL, NULL, NULL, wrong_kind, 1, &o), POSE_ERR_WEIGHTS);
  pose_model_free(m);

  pose_model *out = (pose_model *)1;
  assert_int_equal(pose_model_load("/nonexistent/model.safetensors", NULL, &out), POSE_ERR_IO);
  assert_null(out);
  CONTAINS("/nonexistent/model.safetensors");
  assert_int_equal(pose_model_load(NULL, NULL, &out), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_load("x", NULL, NULL), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_load_memory(NULL, 10, NULL, &out), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_model_load_memory("short", 5, NULL, &out), POSE_ERR_FORMAT);
}

/* Shapes are checked whatever their rank: a 1-D tensor where a matrix belongs, a bias of the
 * wrong length. */
static void shape_errors_name_the_tensor(void **state) {
  (void)state;
  static float data[64];
  pose_st_out one_d = {"attn.query.weight", data, 1, {64}};
  void *bytes;
  size_t size;
  assert_int_equal(pose_st_write_memory(&one_d, 1, NULL, 0, &bytes, &size), POSE_OK);
  pose_model *m = (pose_model *)1;
  pose_load_options o = opts_skip(2, 0);
  assert_int_equal(pose_model_load_memory(bytes, size, &o, &m), POSE_ERR_WEIGHTS);
  assert_null(m);
  CONTAINS("\"attn.query.weight\" has 1 dimensions, expected 2");
  pose_free(bytes);

  pose_model *layer = make_model(POSE_MODEL_LAYER, 4);
  const char *meta[] = {"kind", "layer", "dim", "8", "ff_dim", "12", "skip_factor", "3"};
  size_t n = pose_model_num_weights(layer);
  pose_st_out *t = calloc(n, sizeof *t);
  for (size_t i = 0; i < n; i++) {
    const char *name = pose_model_weight_name(layer, i);
    size_t count;
    pose_model_get_weight(layer, name, &t[i].data, &count);
    t[i].name = name;
    t[i].ndim = 1;
    t[i].shape[0] = count;
    if (count == 64 || count == 96) { /* the [8, 8], [12, 8] and [8, 12] matrices */
      t[i].ndim = 2;
      t[i].shape[0] = strstr(name, "ff.0") ? 12 : 8;
      t[i].shape[1] = count / t[i].shape[0];
    }
    if (strcmp(name, "attn.query.bias") == 0) t[i].shape[0] = 7;
  }
  /* The file holds 7 floats for the bias (the writer takes the count from the shape). */
  assert_int_equal(pose_st_write_memory(t, n, meta, 4, &bytes, &size), POSE_OK);
  assert_int_equal(pose_model_load_memory(bytes, size, NULL, &m), POSE_ERR_WEIGHTS);
  assert_null(m);
  CONTAINS("\"attn.query.bias\" has shape [7], expected [8]");
  pose_free(bytes);
  free(t);
  pose_model_free(layer);
}

/* ---- allocation failure --------------------------------------------------------------------- */

/* Fails the 1st, 2nd, ... allocation of load + forward in turn: each returns out-of-memory,
 * leaves no handle and nothing allocated; finally everything succeeds. */
static void every_failed_allocation_is_clean(void **state) {
  (void)state;
  char *path = fixture_path("classifier_padded.weights.safetensors");
  fx_file *io = fx_open("classifier_padded.io.safetensors");
  size_t nl, *lengths = fx_lengths(io, &nl);
  const float *input = fx_f32(io, "input");
  float out[3 * 5];
  pose_load_options o = opts_skip(2, 0);
  size_t n;
  for (n = 1; n < 10000; n++) {
    test_counting c = {0, 0, n};
    pose_allocator a = test_counting_allocator(&c);
    assert_int_equal(pose_set_allocator(&a), POSE_OK);
    pose_model *m = (pose_model *)1;
    pose_status st = pose_model_load(path, &o, &m);
    if (st == POSE_OK) {
      st = pose_model_forward(m, input, 3, 13, lengths, out, 15);
      pose_model_free(m);
    } else {
      assert_null(m);
    }
    assert_int_equal(c.live, 0);
    assert_int_equal(pose_set_allocator(NULL), POSE_OK);
    if (st == POSE_OK) break;
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
  }
  assert_true(n > 10); /* the loop really went through many allocations */
  assert_close_f32(out, fx_f32(io, "output"), 15, "after the last injected failure");
  free(lengths), free(path);
  fx_close(io);
}

static void every_failed_allocation_in_create_and_save_is_clean(void **state) {
  (void)state;
  char *path = test_tmp_path("oom_save.safetensors");
  size_t n;
  for (n = 1; n < 10000; n++) {
    test_counting c = {0, 0, n};
    pose_allocator a = test_counting_allocator(&c);
    assert_int_equal(pose_set_allocator(&a), POSE_OK);
    pose_model_config cfg;
    pose_model_config_init(&cfg, POSE_MODEL_SUMMARIZER);
    cfg.vocab_size = 7, cfg.dim = 4, cfg.ff_dim = 6, cfg.num_layers = 2;
    pose_model *m = (pose_model *)1;
    pose_status st = pose_model_create(&cfg, &m);
    if (st == POSE_OK) {
      int64_t tok[4] = {1, 2, 3, 4};
      float logits[4 * 7];
      st = pose_model_forward_tokens(m, tok, 1, 4, NULL, logits, 28);
      if (st == POSE_OK) st = pose_model_save(m, path);
      pose_model_free(m);
    } else {
      assert_null(m);
    }
    assert_int_equal(c.live, 0);
    assert_int_equal(pose_set_allocator(NULL), POSE_OK);
    if (st == POSE_OK) break;
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
  }
  assert_true(n > 10);
  free(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pytorch_files_without_metadata_load),
      cmocka_unit_test(metadata_says_what_shapes_cannot),
      cmocka_unit_test(options_give_the_newer_fields),
      cmocka_unit_test(half_precision_files_convert_on_load),
      cmocka_unit_test(missing_skip_factor_is_asked_for),
      cmocka_unit_test(save_load_round_trip_is_bit_exact),
      cmocka_unit_test(failed_save_keeps_the_old_file),
      cmocka_unit_test(model_level_errors_are_named),
      cmocka_unit_test(shape_errors_name_the_tensor),
      cmocka_unit_test(every_failed_allocation_is_clean),
      cmocka_unit_test(every_failed_allocation_in_create_and_save_is_clean),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
