/* Allocation failure on every create, load and forward path: the 1st, 2nd, ... Nth allocation
 * fails in turn; each call returns POSE_ERR_OUT_OF_MEMORY, leaves no handle and nothing
 * allocated, and the first run that gets all its memory gives the same result as an
 * unhindered one. Also: guard bytes around every output buffer stay untouched. */
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
#include "testutil.h"

/* One path under test: runs, writes its result to out (out_count floats), frees what it made. */
typedef pose_status (*path_fn)(float *out, size_t out_count);

#define N 9 /* sequence length */
#define D 8 /* width */

static float X[2 * N * 12];
static int64_t TOK[2 * N];
static const size_t LEN[2] = {N, 4};

static pose_model_config model_cfg(pose_model_kind kind) {
  pose_model_config c;
  pose_model_config_init(&c, kind);
  c.dim = D, c.ff_dim = 12, c.num_layers = kind == POSE_MODEL_LAYER ? 1 : 2, c.num_heads = 2;
  c.skip_factor = 2, c.vocab_size = 11, c.input_dim = 12, c.num_classes = 3;
  c.positional_encoding = kind >= POSE_MODEL_SUMMARIZER;
  return c;
}

static pose_status run_model(pose_model *m, float *out, size_t out_count) {
  pose_model_config c = {.struct_size = sizeof c};
  pose_model_get_config(m, &c);
  if (c.kind == POSE_MODEL_SUMMARIZER) {
    return pose_model_forward_tokens(m, TOK, 2, N, LEN, out, out_count);
  }
  return pose_model_forward(m, X, 2, N, LEN, out, out_count);
}

#define MODEL_PATH(name, kind)                                 \
  static pose_status name(float *out, size_t out_count) {      \
    pose_model_config c = model_cfg(kind);                     \
    pose_model *m = NULL;                                      \
    pose_status st = pose_model_create(&c, &m);                \
    if (st == POSE_OK) st = run_model(m, out, out_count);      \
    pose_model_free(m);                                        \
    return st;                                                 \
  }
MODEL_PATH(layer_create_forward, POSE_MODEL_LAYER)
MODEL_PATH(encoder_create_forward, POSE_MODEL_ENCODER)
MODEL_PATH(summarizer_create_forward, POSE_MODEL_SUMMARIZER)
MODEL_PATH(classifier_create_forward, POSE_MODEL_CLASSIFIER)

/* create_from_weights and load_memory of an encoder, with weights taken from a seeded model
 * built outside the failing allocator. */
static pose_weight *g_weights;
static size_t g_num_weights;
static void *g_file;
static size_t g_file_size;

static pose_status encoder_from_weights(float *out, size_t out_count) {
  pose_model_config c = model_cfg(POSE_MODEL_ENCODER);
  pose_model *m = NULL;
  pose_status st = pose_model_create_from_weights(&c, g_weights, g_num_weights, &m);
  if (st == POSE_OK) st = run_model(m, out, out_count);
  pose_model_free(m);
  return st;
}

static pose_status encoder_load_memory(float *out, size_t out_count) {
  pose_model *m = NULL;
  pose_status st = pose_model_load_memory(g_file, g_file_size, NULL, &m);
  if (st == POSE_OK) st = run_model(m, out, out_count);
  pose_model_free(m);
  return st;
}

static pose_status attention_paths(pose_attention_layout layout, pose_attention_mode mode,
                                   float *out, size_t out_count) {
  pose_attention_config c;
  pose_attention_config_init(&c);
  c.layout = layout, c.mode = mode, c.dim = D, c.num_heads = 2, c.max_seq_len = 30;
  pose_attention_module *a = NULL;
  pose_status st = pose_attention_create(&c, &a);
  if (st == POSE_OK) st = pose_attention_forward(a, X, 2, N, LEN, out, out_count);
  pose_attention_free(a);
  return st;
}

static pose_status attention_qkv_full(float *out, size_t n) {
  return attention_paths(POSE_LAYOUT_QKV_PROJ, POSE_MODE_FULL, out, n);
}
static pose_status attention_sep_adaptive(float *out, size_t n) {
  return attention_paths(POSE_LAYOUT_QUERY_KEY_VALUE, POSE_MODE_ADAPTIVE, out, n);
}

static pose_status attention_from_weights(float *out, size_t out_count) {
  pose_attention_config c;
  pose_attention_config_init(&c);
  c.dim = D;
  static float w[D * D], b[D];
  pose_weight ws[6] = {{"query.weight", w, D * D}, {"query.bias", b, D},
                       {"key.weight", w, D * D},   {"key.bias", b, D},
                       {"value.weight", w, D * D}, {"value.bias", b, D}};
  for (size_t i = 0; i < D * D; i++) w[i] = (float)(i % 7) / 7.0f;
  pose_attention_module *a = NULL;
  pose_status st = pose_attention_create_from_weights(&c, ws, 6, &a);
  if (st == POSE_OK) st = pose_attention_forward(a, X, 2, N, NULL, out, out_count);
  pose_attention_free(a);
  return st;
}

static pose_status functional(float *out, size_t out_count) {
  return pose_attention(X, X + 3, X + 5, 2, N, D, 3, 0.5f, out, out_count);
}

static pose_status map_of_layer_one(float *out, size_t out_count) {
  pose_model_config c = model_cfg(POSE_MODEL_CLASSIFIER);
  pose_model *m = NULL;
  size_t pos[N];
  pose_status st = pose_model_create(&c, &m);
  if (st == POSE_OK) st = pose_model_attention_map(m, 1, X, NULL, N, 1, out, out_count, pos, N);
  pose_model_free(m);
  return st;
}

typedef struct path {
  const char *name;
  path_fn run;
  size_t out_count;
} path;

static const path paths[] = {
    {"layer", layer_create_forward, 2 * N * D},
    {"encoder", encoder_create_forward, 2 * N * D},
    {"summarizer", summarizer_create_forward, 2 * N * 11},
    {"classifier", classifier_create_forward, 2 * 3},
    {"encoder from weights", encoder_from_weights, 2 * N * D},
    {"encoder load_memory", encoder_load_memory, 2 * N * D},
    {"attention qkv full", attention_qkv_full, 2 * N * D},
    {"attention sep adaptive", attention_sep_adaptive, 2 * N * D},
    {"attention from weights", attention_from_weights, 2 * N * D},
    {"functional attention", functional, 2 * N * D},
    {"model attention map", map_of_layer_one, N * N},
};

#define GUARD 16
static const unsigned char GUARD_BYTE = 0xA5;

/* out_count floats between GUARD bytes on each side. */
static float *guarded(unsigned char **block, size_t count) {
  size_t bytes = count * sizeof(float) + 2 * GUARD;
  *block = malloc(bytes);
  memset(*block, GUARD_BYTE, bytes);
  return (float *)(void *)(*block + GUARD);
}

static void check_guards(const unsigned char *block, size_t count, const char *what) {
  size_t end = GUARD + count * sizeof(float);
  for (size_t i = 0; i < GUARD; i++) {
    if (block[i] != GUARD_BYTE || block[end + i] != GUARD_BYTE) {
      test_failf("%s: guard byte %zu around the output was overwritten", what, i);
    }
  }
}

static void every_path_fails_cleanly(void **state) {
  (void)state;
  for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
    const path *pt = &paths[p];
    unsigned char *ref_block, *block;
    float *ref = guarded(&ref_block, pt->out_count), *out = guarded(&block, pt->out_count);
    pose_status st = pt->run(ref, pt->out_count);
    if (st != POSE_OK) test_failf("%s: %s", pt->name, pose_last_error());
    check_guards(ref_block, pt->out_count, pt->name);
    size_t n;
    for (n = 1; n < 100000; n++) {
      test_counting c = {0, 0, n};
      pose_allocator a = test_counting_allocator(&c);
      assert_int_equal(pose_set_allocator(&a), POSE_OK);
      st = pt->run(out, pt->out_count);
      size_t live = c.live;
      assert_int_equal(pose_set_allocator(NULL), POSE_OK);
      if (live != 0) test_failf("%s: %zu allocations leaked when #%zu failed", pt->name, live, n);
      check_guards(block, pt->out_count, pt->name);
      if (st == POSE_OK) break;
      if (st != POSE_ERR_OUT_OF_MEMORY) {
        test_failf("%s: allocation #%zu failed, got %s (%s)", pt->name, n,
                   pose_status_string(st), pose_last_error());
      }
    }
    if (n < 2) test_failf("%s: no allocation was ever failed", pt->name);
    assert_memory_equal(out, ref, pt->out_count * sizeof(float));
    free(ref_block);
    free(block);
  }
}

static int setup(void **state) {
  (void)state;
  fill_uniform(X, sizeof X / sizeof X[0], 3, -1, 1);
  for (size_t i = 0; i < 2 * N; i++) TOK[i] = (int64_t)(i % 11);
  pose_model_config c = model_cfg(POSE_MODEL_ENCODER);
  c.seed = 9;
  pose_model *m = NULL;
  if (pose_model_create(&c, &m) != POSE_OK) return 1;
  g_num_weights = pose_model_num_weights(m);
  g_weights = calloc(g_num_weights, sizeof *g_weights);
  for (size_t i = 0; i < g_num_weights; i++) {
    const char *name = pose_model_weight_name(m, i);
    size_t count;
    const float *data;
    pose_model_get_weight(m, name, &data, &count);
    /* Copies: the weights must outlive the model, freed here under the default allocator. */
    float *copy = malloc(count * sizeof(float));
    memcpy(copy, data, count * sizeof(float));
    g_weights[i] = (pose_weight){strdup(name), copy, count};
  }
  /* libpose's own file: its metadata gives the config. */
  char *file = test_tmp_path("oom_encoder.safetensors");
  if (pose_model_save(m, file) != POSE_OK) return 1;
  FILE *f = fopen(file, "rb");
  fseek(f, 0, SEEK_END);
  g_file_size = (size_t)ftell(f);
  rewind(f);
  g_file = malloc(g_file_size);
  if (fread(g_file, 1, g_file_size, f) != g_file_size) return 1;
  fclose(f);
  free(file);
  pose_model_free(m);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (size_t i = 0; i < g_num_weights; i++) {
    free((void *)g_weights[i].name);
    free((void *)g_weights[i].data);
  }
  free(g_weights);
  free(g_file);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(every_path_fails_cleanly)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
