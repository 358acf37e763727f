/* Elementwise and row kernels: linear, LayerNorm, ReLU, softmax, positional encoding.
 * Public entry points check their arguments and call the unchecked pose_*_rows versions that
 * the modules use. */
#include <math.h>
#include <string.h>

#include "pose_internal.h"

/* ---- linear -------------------------------------------------------------------------------- */

static bool ranges_overlap(const void *a, size_t a_bytes, const void *b, size_t b_bytes) {
  const char *pa = a, *pb = b;
  return pa < pb + b_bytes && pb < pa + a_bytes;
}

pose_status pose_linear(const float *x, size_t rows, size_t in_features, const float *weight,
                        const float *bias, size_t out_features, float *y, size_t y_count) {
  static const char fn[] = "pose_linear";
  POSE_CHECK_PTR(fn, x);
  POSE_CHECK_PTR(fn, weight);
  POSE_CHECK_PTR(fn, y);
  POSE_CHECK_NONZERO(fn, rows);
  POSE_CHECK_NONZERO(fn, in_features);
  POSE_CHECK_NONZERO(fn, out_features);
  size_t x_count, w_count, need;
  if (!pose_mul(rows, in_features, &x_count) || !pose_mul(out_features, in_features, &w_count) ||
      !pose_mul(rows, out_features, &need) || !pose_mul(x_count, sizeof(float), &x_count) ||
      !pose_mul(need, sizeof(float), &(size_t){0})) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "%s: rows %zu, in_features %zu, out_features %zu overflow size_t", fn, rows,
                     in_features, out_features);
  }
  pose_status st = pose_check_count(fn, "y_count", y_count, need);
  if (st != POSE_OK) return st;
  if (!pose_blas_dims_ok(rows, out_features, in_features, in_features, in_features, out_features)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: dimensions exceed the BLAS integer range", fn);
  }
  if (ranges_overlap(x, x_count, y, need * sizeof(float))) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: x and y overlap", fn);
  }
  pose_linear_rows(x, in_features, rows, in_features, weight, bias, out_features, y, out_features);
  return POSE_OK;
}

/* ---- LayerNorm ----------------------------------------------------------------------------- */

void pose_layer_norm_rows(const float *x, size_t rows, size_t dim, const float *gamma,
                          const float *beta, float eps, float *y) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * dim;
    float *yr = y + r * dim;
    /* Two passes in double: exact enough that the float32 result matches PyTorch to rounding. */
    double mean = 0.0;
    for (size_t i = 0; i < dim; i++) mean += xr[i];
    mean /= (double)dim;
    double var = 0.0;
    for (size_t i = 0; i < dim; i++) {
      double d = xr[i] - mean;
      var += d * d;
    }
    var /= (double)dim;
    double inv = 1.0 / sqrt(var + (double)eps);
    for (size_t i = 0; i < dim; i++) {
      double v = (xr[i] - mean) * inv;
      if (gamma != NULL) v *= gamma[i];
      if (beta != NULL) v += beta[i];
      yr[i] = (float)v;
    }
  }
}

pose_status pose_layer_norm(const float *x, size_t rows, size_t dim, const float *gamma,
                            const float *beta, float eps, float *y, size_t y_count) {
  static const char fn[] = "pose_layer_norm";
  POSE_CHECK_PTR(fn, x);
  POSE_CHECK_PTR(fn, y);
  POSE_CHECK_NONZERO(fn, rows);
  POSE_CHECK_NONZERO(fn, dim);
  if (!(eps >= 0.0f) || isinf(eps)) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: eps is %g, need a finite value >= 0", fn,
                     (double)eps);
  }
  size_t need;
  if (!pose_mul(rows, dim, &need)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: rows %zu x dim %zu overflow size_t", fn, rows,
                     dim);
  }
  pose_status st = pose_check_count(fn, "y_count", y_count, need);
  if (st != POSE_OK) return st;
  pose_layer_norm_rows(x, rows, dim, gamma, beta, eps, y);
  return POSE_OK;
}

/* ---- ReLU ---------------------------------------------------------------------------------- */

void pose_relu_inplace(float *x, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (x[i] < 0.0f) x[i] = 0.0f; /* NaN compares false and stays NaN, as in torch.relu */
  }
}

pose_status pose_relu(const float *x, size_t count, float *y, size_t y_count) {
  static const char fn[] = "pose_relu";
  POSE_CHECK_PTR(fn, x);
  POSE_CHECK_PTR(fn, y);
  POSE_CHECK_NONZERO(fn, count);
  pose_status st = pose_check_count(fn, "y_count", y_count, count);
  if (st != POSE_OK) return st;
  if (y != x) memmove(y, x, count * sizeof(float));
  pose_relu_inplace(y, count);
  return POSE_OK;
}

/* ---- softmax ------------------------------------------------------------------------------- */

void pose_softmax_row(float *x, size_t n) {
  float max = -INFINITY;
  for (size_t i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
  if (max == -INFINITY) {
    /* Nothing to attend to: zeros, not the NaN of exp(-inf - -inf). */
    memset(x, 0, n * sizeof(float));
    return;
  }
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    x[i] = expf(x[i] - max);
    sum += x[i];
  }
  float inv = (float)(1.0 / sum);
  for (size_t i = 0; i < n; i++) x[i] *= inv;
}

pose_status pose_softmax(const float *x, size_t rows, size_t cols, float *y, size_t y_count) {
  static const char fn[] = "pose_softmax";
  POSE_CHECK_PTR(fn, x);
  POSE_CHECK_PTR(fn, y);
  POSE_CHECK_NONZERO(fn, rows);
  POSE_CHECK_NONZERO(fn, cols);
  size_t need;
  if (!pose_mul(rows, cols, &need) || !pose_mul(need, sizeof(float), &(size_t){0})) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: rows %zu x cols %zu overflow size_t", fn, rows,
                     cols);
  }
  pose_status st = pose_check_count(fn, "y_count", y_count, need);
  if (st != POSE_OK) return st;
  if (y != x) memmove(y, x, need * sizeof(float));
  for (size_t r = 0; r < rows; r++) pose_softmax_row(y + r * cols, cols);
  return POSE_OK;
}

/* ---- positional encoding ------------------------------------------------------------------- */

/* PyTorch's PositionalEncoding works in float32: div_term = exp(float(2i) * float(-ln(1e4)/d)),
 * angle = float(pos) * div_term, both rounded to float. At large positions one ulp of div_term
 * moves sin(angle) by pos * 2^-24 (3e-5 at 5000), past the float32 tolerance, so the same
 * roundings are reproduced here -- including PyTorch's exp, which on x86-64 is the vectorised
 * SLEEF expf_u10 algorithm and differs from a correctly rounded expf in the last bit for some
 * frequencies. sin/cos are then taken in double of that float angle, within PyTorch's own
 * 1-ulp error. */

/* expf by SLEEF's u10 method (Cody-Waite reduction by ln 2, degree-5 minimax polynomial, every
 * multiply-add fused), as PyTorch's Vectorized<float>::exp evaluates it. Only used for the
 * encoding's exponents, which lie in [-ln(10000), 0]. Each step is its own statement so that
 * compiler contraction cannot change a rounding. */
static float torch_expf(float d) {
  float q = rintf(d * 1.442695040888963407359924681001892137426645954152985934135449406931f);
  float s = fmaf(q, -0.693145751953125f, d);
  s = fmaf(q, -1.428606765330187045e-06f, s);
  float u = 0.000198527617612853646278381f;
  u = fmaf(u, s, 0.00139304355252534151077271f);
  u = fmaf(u, s, 0.00833336077630519866943359f);
  u = fmaf(u, s, 0.0416664853692054748535156f);
  u = fmaf(u, s, 0.166666671633720397949219f);
  u = fmaf(u, s, 0.5f);
  float s2 = s * s;
  u = 1.0f + fmaf(s2, u, s);
  return ldexpf(u, (int)q);
}

float pose_posenc_frequency(size_t i, size_t dim) {
  const float c = (float)(-log(10000.0) / (double)dim);
  float e = (float)i * c;
  return torch_expf(e);
}

void pose_posenc_add_rows(float *x, size_t rows, size_t dim) {
  for (size_t i = 0; i < dim; i += 2) {
    float div = pose_posenc_frequency(i, dim);
    for (size_t p = 0; p < rows; p++) {
      float angle = (float)p * div;
      x[p * dim + i] += (float)sin((double)angle);
      x[p * dim + i + 1] += (float)cos((double)angle);
    }
  }
}

static pose_status check_posenc_dim(const char *fn, size_t dim) {
  POSE_CHECK_NONZERO(fn, dim);
  if (dim % 2 != 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: dim is %zu, need an even width", fn, dim);
  }
  return POSE_OK;
}

pose_status pose_positional_encoding(size_t seq_len, size_t dim, float *pe, size_t pe_count) {
  static const char fn[] = "pose_positional_encoding";
  POSE_CHECK_PTR(fn, pe);
  POSE_CHECK_NONZERO(fn, seq_len);
  pose_status st = check_posenc_dim(fn, dim);
  if (st != POSE_OK) return st;
  size_t need;
  if (!pose_mul(seq_len, dim, &need)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: seq_len %zu x dim %zu overflow size_t", fn,
                     seq_len, dim);
  }
  st = pose_check_count(fn, "pe_count", pe_count, need);
  if (st != POSE_OK) return st;
  memset(pe, 0, need * sizeof(float));
  pose_posenc_add_rows(pe, seq_len, dim);
  return POSE_OK;
}

pose_status pose_positional_encoding_add(float *x, size_t batch, size_t seq_len, size_t dim) {
  static const char fn[] = "pose_positional_encoding_add";
  POSE_CHECK_PTR(fn, x);
  POSE_CHECK_NONZERO(fn, batch);
  POSE_CHECK_NONZERO(fn, seq_len);
  pose_status st = check_posenc_dim(fn, dim);
  if (st != POSE_OK) return st;
  size_t need;
  st = pose_count3(fn, batch, seq_len, dim, &need);
  if (st != POSE_OK) return st;
  for (size_t b = 0; b < batch; b++) pose_posenc_add_rows(x + b * seq_len * dim, seq_len, dim);
  return POSE_OK;
}
