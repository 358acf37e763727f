/* One head of scaled dot-product attention over (possibly strided) keys and values.
 *
 * Queries are processed in blocks of POSE_QBLOCK rows: the block's scores against every kept key
 * are one GEMM (keys read in place through their leading dimension, so strided keys are never
 * gathered), a max-subtracted softmax per row, and one more GEMM against the values. Scratch is
 * POSE_QBLOCK x nkeys floats whatever the number of queries. */
#include "pose_internal.h"

#define POSE_QBLOCK 64

size_t pose_attention_core_scratch(size_t nq, size_t nkeys) {
  size_t rows = nq < POSE_QBLOCK ? nq : POSE_QBLOCK;
  size_t n;
  return pose_mul(rows, nkeys, &n) ? n : 0;
}

void pose_attention_core(const float *q, size_t ldq, size_t nq, const float *k, size_t ldk,
                         const float *v, size_t ldv, size_t nkeys, size_t head_dim, float scale,
                         float *out, size_t ldo, float *scratch) {
  for (size_t i0 = 0; i0 < nq; i0 += POSE_QBLOCK) {
    size_t m = nq - i0 < POSE_QBLOCK ? nq - i0 : POSE_QBLOCK;
    pose_sgemm(false, true, m, nkeys, head_dim, scale, q + i0 * ldq, ldq, k, ldk, 0.0f, scratch,
               nkeys);
    for (size_t r = 0; r < m; r++) pose_softmax_row(scratch + r * nkeys, nkeys);
    pose_sgemm(false, false, m, head_dim, nkeys, 1.0f, scratch, nkeys, v, ldv, 0.0f,
               out + i0 * ldo, ldo);
  }
}
