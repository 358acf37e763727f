/* The only file that includes cblas.h: GEMM wrappers over OpenBLAS, and the parallel linear
 * layer that splits a product into fixed tiles for libpose's worker pool. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "pose_internal.h"

/* OpenBLAS declares this in cblas.h; spelled out for builds against other CBLAS headers. */
void openblas_set_num_threads(int num_threads);

/* Tile of a linear layer run as one task: POSE_GEMM_ROWS rows by at most POSE_GEMM_COLS output
 * features. Each task packs its own slice of the weight, so tiles must not be small: 2048^3
 * over two workers ran at 181-189 GFLOP/s in 64-row tiles, 204-208 in 128, 203-220 in 256 to
 * 1024 -- as fast as OpenBLAS's own two threads (210-218) -- so 256 rows, which still gives
 * the seed models' short sequences enough tasks. Wide outputs (the summarizer's 30000-word
 * vocabulary) are split in columns too, so a task never repacks a 30 MB weight. The tiles
 * depend only on the shapes, so results are the same for any thread count, and a sequence's
 * rows are tiled from its own first row, so a padded batch gives each sequence exactly the bits
 * it gets alone. */
#define POSE_GEMM_ROWS 256
#define POSE_GEMM_COLS 1024
#define POSE_GEMM_WIDE 1536

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

void pose_linear_serial(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                        const float *bias, size_t out, float *y, size_t ldy) {
  /* Prefill with the bias and accumulate (beta = 1): one pass over y instead of two. */
  float beta = 0.0f;
  if (bias != NULL) {
    for (size_t r = 0; r < rows; r++) memcpy(y + r * ldy, bias, out * sizeof(float));
    beta = 1.0f;
  }
  pose_sgemm(false, true, rows, out, in, 1.0f, x, ldx, w, in, beta, y, ldy);
}

/* y^T[out, rows] (leading dim ldy) = W . x^T + bias, the same products with the result stored
 * transposed. */
static void linear_transposed(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                              const float *bias, size_t out, float *y, size_t ldy) {
  float beta = 0.0f;
  if (bias != NULL) {
    for (size_t o = 0; o < out; o++) {
      for (size_t r = 0; r < rows; r++) y[o * ldy + r] = bias[o];
    }
    beta = 1.0f;
  }
  pose_sgemm(false, true, out, rows, in, 1.0f, w, in, x, ldx, beta, y, ldy);
}

size_t pose_linear_col_tiles(size_t out) {
  return out <= POSE_GEMM_WIDE ? 1 : pose_ceil_div(out, POSE_GEMM_COLS);
}

/* Runs tile `tile` (row chunk, column chunk) of job j. */
static void linear_tile(const pose_linear_job *j, size_t row_chunk, size_t col_chunk) {
  size_t r0 = row_chunk * POSE_GEMM_ROWS;
  if (r0 >= j->rows) return;
  size_t rows = j->rows - r0 < POSE_GEMM_ROWS ? j->rows - r0 : POSE_GEMM_ROWS;
  size_t c0 = 0, cols = j->out;
  if (pose_linear_col_tiles(j->out) > 1) {
    c0 = col_chunk * POSE_GEMM_COLS;
    if (c0 >= j->out) return;
    cols = j->out - c0 < POSE_GEMM_COLS ? j->out - c0 : POSE_GEMM_COLS;
  }
  const float *x = j->x + r0 * j->ldx, *w = j->w + c0 * j->in;
  const float *bias = j->bias ? j->bias + c0 : NULL;
  if (j->transposed) {
    linear_transposed(x, j->ldx, rows, j->in, w, bias, cols, j->y + c0 * j->ldy + r0, j->ldy);
  } else {
    pose_linear_serial(x, j->ldx, rows, j->in, w, bias, cols, j->y + r0 * j->ldy + c0, j->ldy);
  }
}

typedef struct linear_many {
  pose_job_fn describe;
  const void *ctx;
  size_t row_chunks, col_chunks;
} linear_many;

static void linear_task(void *arg, size_t task, size_t worker) {
  (void)worker;
  const linear_many *lm = arg;
  size_t per_job = lm->row_chunks * lm->col_chunks;
  pose_linear_job j;
  lm->describe(lm->ctx, task / per_job, &j);
  size_t t = task % per_job;
  linear_tile(&j, t / lm->col_chunks, t % lm->col_chunks);
}

void pose_linear_many(size_t njobs, size_t max_rows, size_t out, pose_job_fn describe,
                      const void *ctx) {
  linear_many lm = {describe, ctx, pose_ceil_div(max_rows, POSE_GEMM_ROWS),
                    pose_linear_col_tiles(out)};
  pose_linear_job first;
  describe(ctx, 0, &first);
  double flops = 2.0 * (double)njobs * (double)max_rows * (double)first.in * (double)out;
  pose_parallel_for(njobs * lm.row_chunks * lm.col_chunks, flops, linear_task, &lm);
}

static void describe_one(const void *ctx, size_t job, pose_linear_job *out) {
  (void)job;
  *out = *(const pose_linear_job *)ctx;
}

void pose_linear_rows(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                      const float *bias, size_t out, float *y, size_t ldy) {
  pose_linear_job j = {.x = x,
                       .ldx = ldx,
                       .rows = rows,
                       .in = in,
                       .w = w,
                       .bias = bias,
                       .out = out,
                       .y = y,
                       .ldy = ldy};
  pose_linear_many(1, rows, out, describe_one, &j);
}

void pose_blas_set_threads(int n) { openblas_set_num_threads(n); }
