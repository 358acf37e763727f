/* Writes libpose models and their outputs for tests/interop_check.py, which loads the files
 * into the seed's PyTorch modules (load_state_dict, strict) and compares outputs: proof that a
 * file libpose writes is a file PyTorch users can read.
 *
 *   interop_writer DIR   ->  DIR/<kind>.safetensors (the model) and DIR/<kind>.io.safetensors
 *                           (input, output and the config as metadata). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pose.h"
#include "pose_internal.h"

static int fail(const char *what) {
  fprintf(stderr, "interop_writer: %s: %s\n", what, pose_last_error());
  return 1;
}

static int write_case(const char *dir, pose_model_kind kind) {
  pose_model_config c;
  pose_model_config_init(&c, kind);
  c.dim = 16, c.ff_dim = kind >= POSE_MODEL_SUMMARIZER ? 64 : 24;
  c.num_layers = kind == POSE_MODEL_LAYER ? 1 : 2;
  c.skip_factor = 3, c.vocab_size = 40, c.input_dim = 12, c.num_classes = 6;
  c.seed = 77 + (uint64_t)kind;
  pose_model *m = NULL;
  if (pose_model_create(&c, &m) != POSE_OK) return fail("create");
  const char *name = pose_model_kind_string(kind);
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
  if (pose_model_save(m, path) != POSE_OK) return fail("save");

  const size_t b = 2, n = 11;
  size_t in_width = kind == POSE_MODEL_CLASSIFIER ? c.input_dim : c.dim, count;
  pose_model_output_count(m, b, n, &count);
  float *in = malloc(b * n * in_width * sizeof(float)), *out = malloc(count * sizeof(float));
  pose_rng rng;
  pose_rng_seed(&rng, 5);
  for (size_t i = 0; i < b * n * in_width; i++) in[i] = pose_rng_uniform(&rng, -1, 1);
  pose_status st;
  if (kind == POSE_MODEL_SUMMARIZER) {
    int64_t tok[2 * 11];
    for (size_t i = 0; i < b * n; i++) tok[i] = (int64_t)((i * 13) % c.vocab_size);
    for (size_t i = 0; i < b * n; i++) in[i] = (float)tok[i]; /* ids are exact in float */
    st = pose_model_forward_tokens(m, tok, b, n, NULL, out, count);
  } else {
    st = pose_model_forward(m, in, b, n, NULL, out, count);
  }
  if (st != POSE_OK) return fail("forward");
  size_t out_shape1 = kind == POSE_MODEL_CLASSIFIER ? c.num_classes : n;
  pose_st_out t[2] = {
      {"input", in, kind == POSE_MODEL_SUMMARIZER ? 2 : 3, {b, n, in_width}},
      {"output", out, kind == POSE_MODEL_CLASSIFIER ? 2 : 3,
       {b, out_shape1, kind == POSE_MODEL_SUMMARIZER ? c.vocab_size : c.dim}}};
  const char *meta[] = {"kind", name};
  snprintf(path, sizeof path, "%s/%s.io.safetensors", dir, name);
  st = pose_st_write_file(path, t, 2, meta, 1);
  free(in), free(out);
  pose_model_free(m);
  return st == POSE_OK ? 0 : fail("write io");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: interop_writer DIR\n");
    return 2;
  }
  for (int k = POSE_MODEL_LAYER; k <= POSE_MODEL_CLASSIFIER; k++) {
    if (write_case(argv[1], (pose_model_kind)k) != 0) return 1;
  }
  return 0;
}
