/* The functional attention of slide 2 on caller buffers. */
#include <math.h>

#include "pose_internal.h"

typedef struct functional {
  const float *query, *key, *value;
  float *out;
  size_t seq_len, dim, skip, nkeys;
  float scale;
} functional;

/* Sequence b as one head: keys and values at 0, k, 2k, ... are rows of a view with leading
 * dimension k * dim, read in place. */
static void describe_seq(const void *ctx, size_t b, size_t head, pose_attn_head *h) {
  (void)head;
  const functional *f = ctx;
  const size_t plane = f->seq_len * f->dim, ld = f->skip * f->dim;
  *h = (pose_attn_head){.q = f->query + b * plane,
                        .ldq = f->dim,
                        .nq = f->seq_len,
                        .k = f->key + b * plane,
                        .ldk = ld,
                        .v = f->value + b * plane,
                        .ldv = ld,
                        .nkeys = f->nkeys,
                        .head_dim = f->dim,
                        .scale = f->scale,
                        .out = f->out + b * plane,
                        .ldo = f->dim};
}

pose_status pose_attention(const float *query, const float *key, const float *value, size_t batch,
                           size_t seq_len, size_t dim, size_t skip_factor, float scale, float *out,
                           size_t out_count) {
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
                     "%s: seq_len %zu, dim %zu, skip_factor %zu exceed the BLAS integer range", fn,
                     seq_len, dim, skip_factor);
  }
  size_t work = pose_attention_work_floats(dim, nkeys), slots;
  if (work == 0 || !pose_mul((size_t)pose_threads(), work, &slots)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: dim %zu is too large", fn, dim);
  }
  float *scratch = pose_alloc_floats(slots);
  if (scratch == NULL) return POSE_ERR_OUT_OF_MEMORY;
  functional f = {query, key, value, out, seq_len, dim, skip_factor, nkeys, scale};
  pose_attention_heads(batch, 1, seq_len, describe_seq, &f, scratch, work);
  pose_free(scratch);
  return POSE_OK;
}
