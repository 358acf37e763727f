/* The complexity model of slide 7 as an API: exact counts for one forward call. */
#include "pose_internal.h"

pose_status pose_attention_cost(const pose_attention_config *cfg, size_t batch, size_t seq_len,
                                pose_cost *cost) {
  static const char fn[] = "pose_attention_cost";
  POSE_CHECK_PTR(fn, cost);
  POSE_CHECK_NONZERO(fn, batch);
  POSE_CHECK_NONZERO(fn, seq_len);
  pose_attention_config c;
  pose_status st = pose_attention_config_check(fn, cfg, &c);
  if (st != POSE_OK) return st;
  uint64_t k = c.mode == POSE_MODE_FULL      ? 1
               : c.mode == POSE_MODE_STRIDED ? c.skip_factor
                                             : pose_adaptive_skip(seq_len, c.max_seq_len);
  uint64_t keys = pose_ceil_div(seq_len, (size_t)k);
  uint64_t pairs;
  if (__builtin_mul_overflow((uint64_t)batch, (uint64_t)c.num_heads, &pairs) ||
      __builtin_mul_overflow(pairs, (uint64_t)seq_len, &pairs) ||
      __builtin_mul_overflow(pairs, keys, &pairs)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: batch %zu x seq_len %zu pairs overflow", fn,
                     batch, seq_len);
  }
  double d = (double)c.dim, hd = d / (double)c.num_heads, b = (double)batch;
  double n = (double)seq_len, kd = (double)keys;
  cost->skip_factor = k;
  cost->keys_per_query = keys;
  cost->attended_pairs = pairs;
  cost->attention_flops = 4.0 * (double)pairs * hd;
  /* Q for every position, K and V for the kept positions only, proj for the fused layout. */
  double proj = 2.0 * b * n * d * d + 2.0 * 2.0 * b * kd * d * d;
  if (c.layout == POSE_LAYOUT_QKV_PROJ) proj += 2.0 * b * n * d * d;
  cost->projection_flops = proj;
  cost->total_flops = cost->attention_flops + proj;
  return POSE_OK;
}
