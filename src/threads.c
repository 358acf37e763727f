/* Explicit thread control: libpose changes BLAS threading only when the caller asks. */
#include <unistd.h>

#include "pose_internal.h"

static int num_threads = 1;

pose_status pose_set_num_threads(int n) {
  if (n < 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "pose_set_num_threads: n is %d, need >= 0", n);
  }
  if (n == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (int)(cpus > 1024 ? 1024 : cpus) : 1;
  }
  num_threads = n;
  pose_blas_set_threads(n);
  return POSE_OK;
}

int pose_get_num_threads(void) { return num_threads; }

int pose_threads(void) { return num_threads; }
