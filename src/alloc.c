/* Every allocation of libpose goes through here, and so through the installed allocator. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pose_internal.h"

#define POSE_ALIGN 64

static void *default_alloc(size_t size, size_t alignment, void *user) {
  (void)user;
  /* aligned_alloc wants a size that is a multiple of the alignment. */
  size_t rounded = (size + alignment - 1) & ~(alignment - 1);
  if (rounded < size) return NULL;
  return aligned_alloc(alignment, rounded == 0 ? alignment : rounded);
}

static void default_free(void *p, void *user) {
  (void)user;
  free(p);
}

static pose_allocator current = {default_alloc, default_free, NULL};
/* Live allocations: switching allocators while memory from the old one is alive would hand
 * its pointers to the wrong free. */
static atomic_size_t live_allocations;

pose_status pose_set_allocator(const pose_allocator *allocator) {
  if (allocator != NULL && (allocator->alloc == NULL || allocator->free == NULL)) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "pose_set_allocator: alloc and free must both be set");
  }
  size_t live = atomic_load(&live_allocations);
  if (live != 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "pose_set_allocator: %zu allocations are still alive; free every handle "
                     "first",
                     live);
  }
  if (allocator == NULL) {
    current = (pose_allocator){default_alloc, default_free, NULL};
  } else {
    current = *allocator;
  }
  return POSE_OK;
}

void *pose_malloc(size_t bytes) {
  void *p = current.alloc(bytes == 0 ? 1 : bytes, POSE_ALIGN, current.user);
  if (p == NULL) {
    pose_fail(POSE_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", bytes);
    return NULL;
  }
  atomic_fetch_add(&live_allocations, 1);
  return p;
}

void *pose_calloc(size_t count, size_t size) {
  size_t bytes;
  if (!pose_mul(count, size, &bytes)) {
    pose_fail(POSE_ERR_OUT_OF_MEMORY, "allocation of %zu x %zu bytes overflows size_t", count,
              size);
    return NULL;
  }
  void *p = pose_malloc(bytes);
  if (p != NULL) memset(p, 0, bytes);
  return p;
}

float *pose_alloc_floats(size_t count) {
  size_t bytes;
  if (!pose_mul(count, sizeof(float), &bytes)) {
    pose_fail(POSE_ERR_OUT_OF_MEMORY, "allocation of %zu floats overflows size_t", count);
    return NULL;
  }
  return pose_malloc(bytes);
}

void pose_free(void *p) {
  if (p == NULL) return;
  atomic_fetch_sub(&live_allocations, 1);
  current.free(p, current.user);
}

char *pose_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = pose_malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}
