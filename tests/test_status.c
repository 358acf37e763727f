/* Status codes, error details, version, thread control and the allocator hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "pose.h"
#include "testutil.h"

static void status_values_are_pinned(void **state) {
  (void)state;
  /* These numbers are ABI: a renumbering must fail here. */
  assert_int_equal(POSE_OK, 0);
  assert_int_equal(POSE_ERR_INVALID_ARGUMENT, 1);
  assert_int_equal(POSE_ERR_OUT_OF_MEMORY, 2);
  assert_int_equal(POSE_ERR_BUFFER_TOO_SMALL, 3);
  assert_int_equal(POSE_ERR_SIZE_OVERFLOW, 4);
  assert_int_equal(POSE_ERR_UNSUPPORTED, 5);
  assert_int_equal(POSE_ERR_IO, 6);
  assert_int_equal(POSE_ERR_FORMAT, 7);
  assert_int_equal(POSE_ERR_WEIGHTS, 8);
  assert_int_equal(POSE_ERR_INTERNAL, 9);
}

static void status_strings(void **state) {
  (void)state;
  assert_string_equal(pose_status_string(POSE_OK), "ok");
  assert_string_equal(pose_status_string(POSE_ERR_OUT_OF_MEMORY), "out of memory");
  for (int s = 0; s <= POSE_ERR_INTERNAL; s++) {
    const char *txt = pose_status_string((pose_status)s);
    assert_non_null(txt);
    assert_true(strlen(txt) > 0);
    assert_string_not_equal(txt, "unknown status");
  }
  assert_string_equal(pose_status_string((pose_status)1234), "unknown status");
  assert_string_equal(pose_status_string((pose_status)-1), "unknown status");
}

static void version(void **state) {
  (void)state;
  assert_string_equal(pose_version_string(), POSE_VERSION_STRING);
  assert_int_equal(pose_version_number(), POSE_VERSION_NUMBER);
  assert_int_equal(POSE_VERSION_NUMBER,
                   POSE_VERSION_MAJOR * 10000 + POSE_VERSION_MINOR * 100 + POSE_VERSION_PATCH);
}

static void last_error_names_the_argument(void **state) {
  (void)state;
  float y[4];
  assert_int_equal(pose_relu(NULL, 4, y, 4), POSE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(pose_last_error(), "pose_relu"));
  assert_non_null(strstr(pose_last_error(), "x is NULL"));
  /* A later success keeps the detail of the last failure. */
  float x[4] = {-1, 2, -3, 4};
  assert_int_equal(pose_relu(x, 4, y, 4), POSE_OK);
  assert_non_null(strstr(pose_last_error(), "x is NULL"));
}

static void *other_thread(void *arg) {
  const char **seen = arg;
  *seen = strdup(pose_last_error()); /* this thread has not failed yet */
  float y;
  pose_relu(NULL, 1, &y, 1);
  return NULL;
}

static void last_error_is_per_thread(void **state) {
  (void)state;
  float y[2] = {0};
  assert_int_equal(pose_relu(y, 2, y, 1), POSE_ERR_BUFFER_TOO_SMALL);
  char *mine = strdup(pose_last_error());
  const char *seen = NULL;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, other_thread, &seen), 0);
  pthread_join(t, NULL);
  assert_string_equal(seen, "");
  assert_string_equal(pose_last_error(), mine); /* untouched by the other thread's failure */
  free((void *)seen);
  free(mine);
}

static void thread_count(void **state) {
  (void)state;
  assert_int_equal(pose_set_num_threads(-1), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_set_num_threads(2), POSE_OK);
  assert_int_equal(pose_get_num_threads(), 2);
  assert_int_equal(pose_set_num_threads(0), POSE_OK);
  assert_true(pose_get_num_threads() >= 1);
  assert_int_equal(pose_set_num_threads(1), POSE_OK);
  assert_int_equal(pose_get_num_threads(), 1);
}

/* ---- allocator hook ------------------------------------------------------------------------ */

static void allocator_rejects_half_set(void **state) {
  (void)state;
  test_counting c = {0};
  pose_allocator a = test_counting_allocator(&c);
  a.free = NULL;
  assert_int_equal(pose_set_allocator(&a), POSE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(pose_last_error(), "alloc and free"));
}

static void allocator_sees_every_allocation(void **state) {
  (void)state;
  test_counting c = {0};
  pose_allocator a = test_counting_allocator(&c);
  assert_int_equal(pose_set_allocator(&a), POSE_OK);
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  pose_attention_module *m = NULL;
  assert_int_equal(pose_attention_create(&cfg, &m), POSE_OK);
  assert_true(c.live > 0);
  /* Switching allocators with memory alive would free it through the wrong one. */
  assert_int_equal(pose_set_allocator(NULL), POSE_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(pose_last_error(), "still alive"));
  float x[3 * 64] = {0}, y[3 * 64];
  assert_int_equal(pose_attention_forward(m, x, 1, 3, NULL, y, 3 * 64), POSE_OK);
  pose_attention_free(m);
  assert_int_equal(c.live, 0);
  assert_int_equal(pose_set_allocator(NULL), POSE_OK);
}

static void failed_allocation_reports_out_of_memory(void **state) {
  (void)state;
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  /* Fail the 1st, 2nd, ... allocation of create and then of forward until both succeed. */
  for (size_t n = 1;; n++) {
    test_counting c = {0, 0, n};
    pose_allocator a = test_counting_allocator(&c);
    assert_int_equal(pose_set_allocator(&a), POSE_OK);
    pose_attention_module *m = (pose_attention_module *)&c; /* must be reset to NULL */
    pose_status st = pose_attention_create(&cfg, &m);
    if (st == POSE_OK) {
      float x[5 * 64] = {0}, y[5 * 64];
      st = pose_attention_forward(m, x, 1, 5, NULL, y, 5 * 64);
      pose_attention_free(m);
      assert_int_equal(c.live, 0);
      assert_int_equal(pose_set_allocator(NULL), POSE_OK);
      if (st == POSE_OK) break;
    } else {
      assert_null(m);
      assert_int_equal(c.live, 0);
      assert_int_equal(pose_set_allocator(NULL), POSE_OK);
    }
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
    assert_non_null(strstr(pose_last_error(), "out of memory"));
    assert_true(n < 100);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(status_values_are_pinned),
      cmocka_unit_test(status_strings),
      cmocka_unit_test(version),
      cmocka_unit_test(last_error_names_the_argument),
      cmocka_unit_test(last_error_is_per_thread),
      cmocka_unit_test(thread_count),
      cmocka_unit_test(allocator_rejects_half_set),
      cmocka_unit_test(allocator_sees_every_allocation),
      cmocka_unit_test(failed_allocation_reports_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
