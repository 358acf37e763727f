/* Status strings, the thread-local error detail, version queries and size checks. */
#include <stdarg.h>
#include <stdio.h>

#include "pose_internal.h"

static _Thread_local char last_error[512];

const char *pose_version_string(void) { return POSE_VERSION_STRING; }

unsigned pose_version_number(void) { return POSE_VERSION_NUMBER; }

const char *pose_status_string(pose_status status) {
  switch (status) {
    case POSE_OK: return "ok";
    case POSE_ERR_INVALID_ARGUMENT: return "invalid argument";
    case POSE_ERR_OUT_OF_MEMORY: return "out of memory";
    case POSE_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case POSE_ERR_SIZE_OVERFLOW: return "size overflow";
    case POSE_ERR_UNSUPPORTED: return "unsupported";
    case POSE_ERR_IO: return "I/O error";
    case POSE_ERR_FORMAT: return "malformed file";
    case POSE_ERR_WEIGHTS: return "weights do not match the model";
    case POSE_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

const char *pose_last_error(void) { return last_error; }

pose_status pose_fail(pose_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

pose_status pose_check_count(const char *fn, const char *what, size_t have, size_t need) {
  if (have < need) {
    return pose_fail(POSE_ERR_BUFFER_TOO_SMALL, "%s: %s is %zu elements, need %zu", fn, what, have,
                     need);
  }
  return POSE_OK;
}

pose_status pose_count3(const char *fn, size_t a, size_t b, size_t c, size_t *need) {
  if (!pose_mul3(a, b, c, need)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: %zu x %zu x %zu elements overflow size_t", fn, a,
                     b, c);
  }
  return POSE_OK;
}
