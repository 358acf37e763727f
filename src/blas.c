/* The only file that includes cblas.h: GEMM wrappers over OpenBLAS. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "pose_internal.h"

/* OpenBLAS declares this in cblas.h; spelled out for builds against other CBLAS headers. */
void openblas_set_num_threads(int num_threads);

bool pose_blas_dims_ok(size_t m, size_t n, size_t k, size_t lda, size_t ldb, size_t ldc) {
  const size_t lim = (size_t)INT_MAX;
  return m <= lim && n <= lim && k <= lim && lda <= lim && ldb <= lim && ldc <= lim;
}

void pose_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    /* BLAS leaves C untouched when k == 0 only if beta == 1; be explicit. */
    for (size_t i = 0; i < m; i++) {
      for (size_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
              (int)ldb, beta, c, (int)ldc);
}

void pose_linear_rows(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                      const float *bias, size_t out, float *y, size_t ldy) {
  /* Prefill with the bias and accumulate (beta = 1): one pass over y instead of two. */
  float beta = 0.0f;
  if (bias != NULL) {
    for (size_t r = 0; r < rows; r++) memcpy(y + r * ldy, bias, out * sizeof(float));
    beta = 1.0f;
  }
  pose_sgemm(false, true, rows, out, in, 1.0f, x, ldx, w, in, beta, y, ldy);
}

void pose_blas_set_threads(int n) { openblas_set_num_threads(n); }
