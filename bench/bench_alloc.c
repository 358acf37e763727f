/* Counting allocator: a 64-byte header in front of each block remembers its size, so free can
 * subtract it; counters are atomic because libpose may allocate from its worker threads. */
#include "bench_alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* The header is as large as the strongest alignment libpose may ask for (64), so the pointer
 * handed out keeps the block's alignment. */
#define HEADER 64

static atomic_size_t current_bytes;
static atomic_size_t peak_bytes;

static void raise_peak(size_t now) {
  size_t seen = atomic_load(&peak_bytes);
  while (now > seen && !atomic_compare_exchange_weak(&peak_bytes, &seen, now)) {
  }
}

static void *counting_alloc(size_t size, size_t alignment, void *user) {
  (void)user;
  if (alignment > HEADER || size > SIZE_MAX - 2 * HEADER) return NULL;
  /* aligned_alloc wants a multiple of the alignment. */
  size_t total = (size + HEADER + HEADER - 1) / HEADER * HEADER;
  unsigned char *block = aligned_alloc(HEADER, total);
  if (block == NULL) return NULL;
  *(size_t *)block = size;
  raise_peak(atomic_fetch_add(&current_bytes, size) + size);
  return block + HEADER;
}

static void counting_free(void *ptr, void *user) {
  (void)user;
  if (ptr == NULL) return;
  unsigned char *block = (unsigned char *)ptr - HEADER;
  atomic_fetch_sub(&current_bytes, *(size_t *)block);
  free(block);
}

pose_status bench_alloc_install(void) {
  static const pose_allocator counting = {counting_alloc, counting_free, NULL};
  return pose_set_allocator(&counting);
}

size_t bench_alloc_current(void) { return atomic_load(&current_bytes); }

size_t bench_alloc_peak(void) { return atomic_load(&peak_bytes); }

void bench_alloc_reset_peak(void) { atomic_store(&peak_bytes, atomic_load(&current_bytes)); }
