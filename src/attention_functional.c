/* The functional attention of slide 2 on caller buffers. */
#include <math.h>

#include "pose_internal.h"

pose_status pose_attention(const float *query, const float *key, const float *value,
                           size_t batch, size_t seq_len, size_t dim, size_t skip_factor,
                           float scale, float *out, size_t out_count) {
  static const char fn[] = "pose_attention";
  POSE_CHECK_PTR(fn, query);
  POSE_CHECK_PTR(fn, key);
  POSE_CHECK_PTR(fn, value);
  POSE_CHECK_PTR(fn, out);
  POSE_CHECK_NONZERO(fn, batch);
  POSE_CHECK_NONZERO(fn, seq_len);
  POSE_CHECK_NONZERO(fn, dim);
  POSE_CHECK_NONZERO(fn, skip_factor);
  if (!isfinite(scale)) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: scale is %g, need a finite value", fn,
                     (double)scale);
  }
  size_t need, ld;
  pose_status st = pose_count3(fn, batch, seq_len, dim, &need);
  if (st != POSE_OK) return st;
  st = pose_check_count(fn, "out_count", out_count, need);
  if (st != POSE_OK) return st;
  size_t nkeys = pose_ceil_div(seq_len, skip_factor);
  if (!pose_mul(skip_factor, dim, &ld) || !pose_blas_dims_ok(seq_len, nkeys, dim, ld, ld, nkeys)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "%s: seq_len %zu, dim %zu, skip_factor %zu exceed the BLAS integer range",
                     fn, seq_len, dim, skip_factor);
  }
  size_t scratch_count = pose_attention_core_scratch(seq_len, nkeys);
  float *scratch = pose_alloc_floats(scratch_count);
  if (scratch == NULL) return POSE_ERR_OUT_OF_MEMORY;
  size_t plane = seq_len * dim;
  for (size_t b = 0; b < batch; b++) {
    /* Keys and values at 0, k, 2k, ... are rows of a view with leading dimension k * dim. */
    pose_attention_core(query + b * plane, dim, seq_len, key + b * plane, ld, value + b * plane,
                        ld, nkeys, dim, scale, out + b * plane, dim, scratch);
  }
  pose_free(scratch);
  return POSE_OK;
}
