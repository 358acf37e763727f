/* Position ids: the slide 5 encoding at arbitrary positions, and the PoSE sampler. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pose.h"
#include "ref64.h"
#include "testutil.h"

#define CONTAINS(s) assert_non_null(strstr(pose_last_error(), s))

static void encoding_at_ids_equals_the_table_rows(void **state) {
  (void)state;
  const size_t n = 9000, d = 6;
  const int64_t ids[7] = {0, 1, 8999, 17, 17, 4096, 5000};
  float *table = test_alloc_f32(n * d), at[7 * 6];
  assert_int_equal(pose_positional_encoding(n, d, table, n * d), POSE_OK);
  assert_int_equal(pose_positional_encoding_at(ids, 7, d, at, 7 * 6), POSE_OK);
  for (size_t i = 0; i < 7; i++) {
    assert_memory_equal(at + i * d, table + (size_t)ids[i] * d, d * sizeof(float));
  }
  /* Far positions, as PyTorch's float32 table would have them. */
  const int64_t far[2] = {100000, 1000003};
  double ref[2 * 4];
  float got[2 * 4];
  assert_int_equal(pose_positional_encoding_at(far, 2, 4, got, 8), POSE_OK);
  for (size_t i = 0; i < 2; i++) {
    double table_row[4];
    /* ref64's PyTorch-rounded table at one position: build rows 0..pos would be big; use the
     * frequency rule directly through a 1-row table shifted by the position. */
    float w0 = ref64_torch_expf(0.0f), w1 = ref64_torch_expf(2.0f * (float)(-log(10000.0) / 4));
    float a0 = (float)far[i] * w0, a1 = (float)far[i] * w1;
    table_row[0] = sin(a0), table_row[1] = cos(a0), table_row[2] = sin(a1), table_row[3] = cos(a1);
    memcpy(ref + i * 4, table_row, sizeof table_row);
  }
  assert_close_f64ref(got, ref, 8, TEST_ATOL, TEST_RTOL, "encoding at far ids");
  free(table);
}

static void encoding_at_errors(void **state) {
  (void)state;
  int64_t ids[2] = {0, -1};
  float pe[8] = {0};
  assert_int_equal(pose_positional_encoding_at(ids, 2, 4, pe, 8), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("positions[1] is -1");
  ids[1] = (int64_t)1 << 24;
  assert_int_equal(pose_positional_encoding_at(ids, 2, 4, pe, 8), POSE_ERR_INVALID_ARGUMENT);
  ids[1] = 3;
  assert_int_equal(pose_positional_encoding_at(ids, 2, 3, pe, 8), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("even");
  assert_int_equal(pose_positional_encoding_at(ids, 2, 4, pe, 7), POSE_ERR_BUFFER_TOO_SMALL);
  assert_int_equal(pose_positional_encoding_at(NULL, 2, 4, pe, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding_at(ids, 0, 4, pe, 8), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_positional_encoding_at(ids, SIZE_MAX, 4, pe, 8), POSE_ERR_SIZE_OVERFLOW);
  for (int i = 0; i < 8; i++) assert_true(pe[i] == 0.0f);
}

/* Number of places where consecutive ids jump by more than one. */
static size_t jumps(const int64_t *ids, size_t n) {
  size_t j = 0;
  for (size_t i = 1; i < n; i++) j += ids[i] != ids[i - 1] + 1;
  return j;
}

static void pose_ids_have_the_published_shape(void **state) {
  (void)state;
  const size_t window = 512, target = 8192, chunks = 3;
  int64_t ids[512], again[512];
  double mean_last = 0;
  size_t reached_far = 0;
  for (uint64_t seed = 0; seed < 400; seed++) {
    assert_int_equal(pose_sample_position_ids(window, target, chunks, seed, ids, 512), POSE_OK);
    assert_int_equal(ids[0], 0); /* the first chunk is not shifted */
    for (size_t i = 1; i < window; i++) assert_true(ids[i] > ids[i - 1]);
    assert_true(ids[window - 1] < (int64_t)target);
    assert_true(jumps(ids, window) <= chunks - 1);
    mean_last += (double)ids[window - 1];
    reached_far += ids[window - 1] > (int64_t)(target * 3 / 4);
    /* Reproducible from the seed. */
    assert_int_equal(pose_sample_position_ids(window, target, chunks, seed, again, 512), POSE_OK);
    assert_memory_equal(ids, again, sizeof ids);
  }
  /* The last bias is the larger of two nested uniform draws: its mean is 3/4 of the span. */
  mean_last /= 400.0;
  double span = (double)(target - window);
  assert_true(fabs(mean_last - (window - 1 + 0.75 * span)) < 0.06 * span);
  assert_true(reached_far > 40);
  /* Different seeds give different ids. */
  assert_int_equal(pose_sample_position_ids(window, target, chunks, 1, again, 512), POSE_OK);
  assert_int_equal(pose_sample_position_ids(window, target, chunks, 2, ids, 512), POSE_OK);
  assert_memory_not_equal(ids, again, sizeof ids);
}

static void pose_ids_edge_cases(void **state) {
  (void)state;
  int64_t ids[16];
  /* No room to skip, or a single chunk: plain 0..window-1. */
  assert_int_equal(pose_sample_position_ids(16, 16, 4, 9, ids, 16), POSE_OK);
  for (int i = 0; i < 16; i++) assert_int_equal(ids[i], i);
  assert_int_equal(pose_sample_position_ids(16, 1000, 1, 9, ids, 16), POSE_OK);
  for (int i = 0; i < 16; i++) assert_int_equal(ids[i], i);
  /* As many chunks as tokens: every token may move. */
  assert_int_equal(pose_sample_position_ids(16, 1000, 16, 9, ids, 16), POSE_OK);
  for (int i = 1; i < 16; i++) assert_true(ids[i] > ids[i - 1] && ids[i] < 1000);
  assert_int_equal(pose_sample_position_ids(16, 1000, 17, 9, ids, 16), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("num_chunks");
  assert_int_equal(pose_sample_position_ids(16, 15, 2, 9, ids, 16), POSE_ERR_INVALID_ARGUMENT);
  CONTAINS("target_len");
  assert_int_equal(pose_sample_position_ids(0, 15, 2, 9, ids, 16), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_sample_position_ids(16, 100, 0, 9, ids, 16), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_sample_position_ids(16, 100, 2, 9, ids, 15), POSE_ERR_BUFFER_TOO_SMALL);
  assert_int_equal(pose_sample_position_ids(16, 100, 2, 9, NULL, 16), POSE_ERR_INVALID_ARGUMENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(encoding_at_ids_equals_the_table_rows),
      cmocka_unit_test(encoding_at_errors),
      cmocka_unit_test(pose_ids_have_the_published_shape),
      cmocka_unit_test(pose_ids_edge_cases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
