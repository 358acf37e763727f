/* libFuzzer target: arbitrary bytes through the safetensors parser and the model loader.
 * Nothing may crash, leak or read out of bounds; every rejection must come with a status and a
 * message. Accepted models are run once on a tiny input so that loaded shapes are exercised. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pose.h"
#include "pose_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pose_st_file f;
  if (pose_st_parse(data, size, &f) == POSE_OK) pose_st_file_free(&f);

  pose_load_options o;
  pose_load_options_init(&o);
  o.skip_factor = 2;
  pose_model *m = NULL;
  pose_status st = pose_model_load_memory(data, size, &o, &m);
  if (st != POSE_OK) {
    if (m != NULL || pose_last_error()[0] == '\0') __builtin_trap();
    return 0;
  }
  pose_model_config c;
  pose_model_config_init(&c, POSE_MODEL_LAYER);
  pose_model_get_config(m, &c);
  /* Keep the forward small: fuzzed widths can be large. */
  size_t width = c.kind == POSE_MODEL_CLASSIFIER ? c.input_dim : c.dim, count;
  if (width <= 4096 && c.dim <= 4096 && pose_model_output_count(m, 1, 3, &count) == POSE_OK &&
      count <= ((size_t)1 << 20)) {
    static float in[3 * 4096], out[1 << 20];
    int64_t tok[3] = {0, 0, 0};
    memset(in, 0, sizeof in);
    if (c.kind == POSE_MODEL_SUMMARIZER) {
      st = pose_model_forward_tokens(m, tok, 1, 3, NULL, out, count);
    } else {
      st = pose_model_forward(m, in, 1, 3, NULL, out, count);
    }
    if (st != POSE_OK && st != POSE_ERR_OUT_OF_MEMORY) __builtin_trap();
  }
  pose_model_free(m);
  return 0;
}
