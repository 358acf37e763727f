/* Kernels: linear, LayerNorm, ReLU, softmax, positional encoding, top-k -- against the float64
 * reference, PyTorch fixtures, and every error path. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "pose.h"
#include "ref64.h"
#include "testutil.h"

#define CONTAINS(s) assert_non_null(strstr(pose_last_error(), s))

/* ---- linear -------------------------------------------------------------------------------- */

static void linear_matches_reference(void **state) {
  (void)state;
  const size_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 64, 33}, {128, 96, 200}};
  for (size_t s = 0; s < 4; s++) {
    size_t rows = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
    float *x = test_alloc_f32(rows * in), *w = test_alloc_f32(out * in);
    float *b = test_alloc_f32(out), *y = test_alloc_f32(rows * out);
    double *ref = test_alloc_f64(rows * out);
    fill_uniform(x, rows * in, 1 + s, -2, 2);
    fill_uniform(w, out * in, 2 + s, -1, 1);
    fill_uniform(b, out, 3 + s, -1, 1);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      const float *bias = with_bias ? b : NULL;
      assert_int_equal(pose_linear(x, rows, in, w, bias, out, y, rows * out), POSE_OK);
      ref64_linear(x, rows, in, w, bias, out, ref);
      assert_close_f64ref(y, ref, rows * out, 1e-5, 1e-5, "pose_linear");
    }
    free(x), free(w), free(b), free(y), free(ref);
  }
}

static void linear_errors(void **state) {
  (void)state;
  float x[6] = {0}, w[6] = {0}, y[4] = {0};
  assert_int_equal(pose_linear(NULL, 2, 3, w, NULL, 2, y, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("x is NULL");
  assert_int_equal(pose_linear(x, 2, 3, NULL, NULL, 2, y, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("weight is NULL");
  assert_int_equal(pose_linear(x, 2, 3, w, NULL, 2, NULL, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_linear(x, 0, 3, w, NULL, 2, y, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("rows is 0");
  assert_int_equal(pose_linear(x, 2, 0, w, NULL, 2, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_linear(x, 2, 3, w, NULL, 0, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_linear(x, 2, 3, w, NULL, 2, y, 3), POSE_ERR_BUFFER_TOO_SMALL);
  CONTAINS("need 4");
  assert_int_equal(pose_linear(x, SIZE_MAX / 2, 3, w, NULL, 2, y, 4), POSE_ERR_SIZE_OVERFLOW);
  assert_int_equal(pose_linear(x, (size_t)1 << 40, 1, w, NULL, 1, y, (size_t)1 << 40),
                   POSE_ERR_SIZE_OVERFLOW); /* past the BLAS integer range */
  assert_int_equal(pose_linear(x, 2, 3, w, NULL, 2, x + 1, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("overlap");
  /* Nothing was written by any failed call. */
  for (int i = 0; i < 4; i++) assert_true(y[i] == 0.0f);
}

/* ---- LayerNorm ----------------------------------------------------------------------------- */

static void layer_norm_matches_reference(void **state) {
  (void)state;
  const size_t rows = 7, dim = 33;
  float *x = test_alloc_f32(rows * dim), *g = test_alloc_f32(dim), *b = test_alloc_f32(dim);
  float *y = test_alloc_f32(rows * dim);
  double *ref = test_alloc_f64(rows * dim);
  fill_uniform(x, rows * dim, 11, -3, 5);
  fill_uniform(g, dim, 12, 0.5f, 1.5f);
  fill_uniform(b, dim, 13, -1, 1);
  assert_int_equal(pose_layer_norm(x, rows, dim, g, b, 1e-5f, y, rows * dim), POSE_OK);
  ref64_layer_norm(x, rows, dim, g, b, 1e-5, ref);
  assert_close_f64ref(y, ref, rows * dim, 1e-5, 1e-5, "layer_norm");
  /* NULL gamma/beta mean 1 and 0; in place is allowed. */
  ref64_layer_norm(x, rows, dim, NULL, NULL, 1e-5, ref);
  assert_int_equal(pose_layer_norm(x, rows, dim, NULL, NULL, 1e-5f, x, rows * dim), POSE_OK);
  assert_close_f64ref(x, ref, rows * dim, 1e-5, 1e-5, "layer_norm in place");
  /* A constant row normalises to beta, not NaN. */
  float c[4] = {3, 3, 3, 3}, cy[4];
  assert_int_equal(pose_layer_norm(c, 1, 4, NULL, NULL, 1e-5f, cy, 4), POSE_OK);
  for (int i = 0; i < 4; i++) assert_true(cy[i] == 0.0f);
  free(x), free(g), free(b), free(y), free(ref);
}

static void layer_norm_errors(void **state) {
  (void)state;
  float x[4] = {0}, y[4];
  assert_int_equal(pose_layer_norm(NULL, 1, 4, NULL, NULL, 1e-5f, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_layer_norm(x, 0, 4, NULL, NULL, 1e-5f, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_layer_norm(x, 1, 0, NULL, NULL, 1e-5f, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_layer_norm(x, 1, 4, NULL, NULL, -1.0f, y, 4), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("eps");
  assert_int_equal(pose_layer_norm(x, 1, 4, NULL, NULL, NAN, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_layer_norm(x, 1, 4, NULL, NULL, INFINITY, y, 4),
                   POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_layer_norm(x, 2, 4, NULL, NULL, 1e-5f, y, 4), POSE_ERR_BUFFER_TOO_SMALL);
  assert_int_equal(pose_layer_norm(x, SIZE_MAX, 4, NULL, NULL, 1e-5f, y, 4),
                   POSE_ERR_SIZE_OVERFLOW);
}

/* ---- ReLU and softmax ---------------------------------------------------------------------- */

static void relu_values(void **state) {
  (void)state;
  float x[5] = {-1.5f, 0.0f, 2.0f, -0.0f, NAN}, y[5];
  assert_int_equal(pose_relu(x, 5, y, 5), POSE_OK);
  assert_true(y[0] == 0.0f && y[1] == 0.0f && y[2] == 2.0f && y[3] == 0.0f);
  assert_true(isnan(y[4]));
  assert_int_equal(pose_relu(x, 5, x, 5), POSE_OK); /* in place */
  assert_true(x[0] == 0.0f && x[2] == 2.0f);
  assert_int_equal(pose_relu(NULL, 5, y, 5), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_relu(x, 5, NULL, 5), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_relu(x, 0, y, 5), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_relu(x, 5, y, 4), POSE_ERR_BUFFER_TOO_SMALL);
}

static void softmax_matches_reference(void **state) {
  (void)state;
  const size_t rows = 9, cols = 77;
  float *x = test_alloc_f32(rows * cols), *y = test_alloc_f32(rows * cols);
  double *ref = test_alloc_f64(rows * cols);
  fill_uniform(x, rows * cols, 21, -20, 20);
  assert_int_equal(pose_softmax(x, rows, cols, y, rows * cols), POSE_OK);
  ref64_softmax(x, rows, cols, ref);
  assert_close_f64ref(y, ref, rows * cols, 1e-6, 1e-5, "softmax");
  assert_int_equal(pose_softmax(x, rows, cols, x, rows * cols), POSE_OK);
  assert_close_f64ref(x, ref, rows * cols, 1e-6, 1e-5, "softmax in place");
  free(x), free(y), free(ref);
}

static void softmax_extremes(void **state) {
  (void)state;
  /* Scores near float overflow stay finite; an all -inf row gives zeros, not NaN. */
  float x[3][4] = {{3e38f, -3e38f, 3e38f, 0.0f},
                   {-INFINITY, -INFINITY, -INFINITY, -INFINITY},
                   {-INFINITY, 1.0f, -INFINITY, 1.0f}};
  float y[12];
  assert_int_equal(pose_softmax(&x[0][0], 3, 4, y, 12), POSE_OK);
  const float want[12] = {0.5f, 0, 0.5f, 0, 0, 0, 0, 0, 0, 0.5f, 0, 0.5f};
  for (int i = 0; i < 12; i++) {
    assert_true(isfinite(y[i]));
    assert_true(fabsf(y[i] - want[i]) < 1e-7f);
  }
}

static void softmax_errors(void **state) {
  (void)state;
  float x[4] = {0}, y[4];
  assert_int_equal(pose_softmax(NULL, 1, 4, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_softmax(x, 1, 4, NULL, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_softmax(x, 0, 4, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_softmax(x, 1, 0, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_softmax(x, 2, 4, y, 4), POSE_ERR_BUFFER_TOO_SMALL);
  assert_int_equal(pose_softmax(x, SIZE_MAX / 2, 4, y, 4), POSE_ERR_SIZE_OVERFLOW);
}

/* ---- positional encoding ------------------------------------------------------------------- */

static void positional_encoding_matches_pytorch(void **state) {
  (void)state;
  for (int c = 0; c < 4; c++) {
    char name[64];
    snprintf(name, sizeof name, "posenc_%d.io.safetensors", c);
    fx_file *f = fx_open(name);
    size_t n = fx_meta_size(f, "seq_len"), d = fx_meta_size(f, "dim");
    const float *want = fx_f32(f, "output");
    float *pe = test_alloc_f32(n * d);
    assert_int_equal(pose_positional_encoding(n, d, pe, n * d), POSE_OK);
    assert_close_f32(pe, want, n * d, name);
    /* The add form on a batch of zeros gives the same table per sequence. */
    float *x = test_alloc_f32(2 * n * d);
    assert_int_equal(pose_positional_encoding_add(x, 2, n, d), POSE_OK);
    assert_close_f32(x, want, n * d, "add, sequence 0");
    assert_close_f32(x + n * d, want, n * d, "add, sequence 1");
    free(pe), free(x);
    fx_close(f);
  }
}

static void positional_encoding_any_even_width(void **state) {
  (void)state;
  const size_t n = 37, dims[] = {2, 10, 130};
  for (size_t i = 0; i < 3; i++) {
    size_t d = dims[i];
    float *pe = test_alloc_f32(n * d);
    double *ref = test_alloc_f64(n * d);
    assert_int_equal(pose_positional_encoding(n, d, pe, n * d), POSE_OK);
    ref64_positional_encoding_torch(n, d, ref);
    assert_close_f64ref(pe, ref, n * d, TEST_ATOL, TEST_RTOL, "positional encoding");
    free(pe), free(ref);
  }
}

static void positional_encoding_errors(void **state) {
  (void)state;
  float pe[12];
  assert_int_equal(pose_positional_encoding(2, 3, pe, 12), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("even");
  assert_int_equal(pose_positional_encoding(0, 2, pe, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding(2, 0, pe, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding(2, 2, NULL, 12), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding(7, 2, pe, 12), POSE_ERR_BUFFER_TOO_SMALL);
  assert_int_equal(pose_positional_encoding(SIZE_MAX, 2, pe, 12), POSE_ERR_SIZE_OVERFLOW);
  assert_int_equal(pose_positional_encoding_add(pe, 1, 2, 3), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding_add(NULL, 1, 2, 2), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding_add(pe, 0, 2, 2), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding_add(pe, SIZE_MAX, SIZE_MAX, 2),
                   POSE_ERR_SIZE_OVERFLOW);
}

/* ---- top-k --------------------------------------------------------------------------------- */

static void top_k_orders_and_breaks_ties_low(void **state) {
  (void)state;
  const float s[7] = {0.1f, 0.7f, NAN, 0.7f, -1.0f, 0.9f, 0.2f};
  size_t idx[7];
  float val[7];
  assert_int_equal(pose_top_k(s, 7, 3, idx, val), POSE_OK);
  assert_int_equal(idx[0], 5);
  assert_int_equal(idx[1], 1);
  assert_int_equal(idx[2], 3);
  assert_true(val[0] == 0.9f && val[2] == 0.7f);
  assert_int_equal(pose_top_k(s, 7, 7, idx, NULL), POSE_OK);
  assert_int_equal(idx[6], 2); /* NaN ranks last */
  assert_int_equal(idx[5], 4);
  assert_int_equal(pose_top_k(s, 7, 8, idx, val), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_top_k(s, 7, 0, idx, val), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_top_k(NULL, 7, 1, idx, val), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_top_k(s, 7, 1, NULL, val), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_top_k(s, 0, 1, idx, val), POSE_ERR_INVALID_ARGUMENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(linear_matches_reference),
      cmocka_unit_test(linear_errors),
      cmocka_unit_test(layer_norm_matches_reference),
      cmocka_unit_test(layer_norm_errors),
      cmocka_unit_test(relu_values),
      cmocka_unit_test(softmax_matches_reference),
      cmocka_unit_test(softmax_extremes),
      cmocka_unit_test(softmax_errors),
      cmocka_unit_test(positional_encoding_matches_pytorch),
      cmocka_unit_test(positional_encoding_any_even_width),
      cmocka_unit_test(positional_encoding_errors),
      cmocka_unit_test(top_k_orders_and_breaks_ties_low),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
