/* libFuzzer target: whatever the parser accepts, the writer writes back, and parsing that gives
 * the same tensors and metadata bit for bit; a second write gives the same bytes. */
#include <stdint.h>
#include <string.h>

#include "pose.h"
#include "pose_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(const pose_st_file *a, const pose_st_file *b) {
  if (a->num_tensors != b->num_tensors || a->num_meta != b->num_meta) __builtin_trap();
  for (size_t i = 0; i < a->num_tensors; i++) {
    const pose_st_tensor *x = &a->tensors[i], *y = pose_st_find(b, x->name);
    if (y == NULL || x->ndim != y->ndim || x->count != y->count) __builtin_trap();
    if (memcmp(x->shape, y->shape, x->ndim * sizeof x->shape[0]) != 0) __builtin_trap();
    if (memcmp(x->data, y->data, x->count * sizeof(float)) != 0) __builtin_trap();
  }
  for (size_t i = 0; i < a->num_meta; i++) {
    const char *v = pose_st_meta_get(b, a->meta[i].key);
    if (v == NULL || strcmp(v, a->meta[i].value) != 0) __builtin_trap();
  }
}

/* Serialises f; returns POSE_OK and a pose_malloc'd buffer. */
static pose_status write_back(const pose_st_file *f, void **bytes, size_t *size) {
  pose_st_out *t = pose_calloc(f->num_tensors + 1, sizeof *t);
  const char **kv = pose_calloc(2 * f->num_meta + 1, sizeof *kv);
  pose_status st = POSE_ERR_OUT_OF_MEMORY;
  if (t != NULL && kv != NULL) {
    for (size_t i = 0; i < f->num_tensors; i++) {
      t[i].name = f->tensors[i].name;
      t[i].data = f->tensors[i].data;
      t[i].ndim = f->tensors[i].ndim;
      memcpy(t[i].shape, f->tensors[i].shape, sizeof t[i].shape);
    }
    for (size_t i = 0; i < f->num_meta; i++) {
      kv[2 * i] = f->meta[i].key;
      kv[2 * i + 1] = f->meta[i].value;
    }
    st = pose_st_write_memory(t, f->num_tensors, kv, f->num_meta, bytes, size);
  }
  pose_free(t);
  pose_free(kv);
  return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pose_st_file a, b;
  if (pose_st_parse(data, size, &a) != POSE_OK) return 0;
  void *bytes = NULL, *bytes2 = NULL;
  size_t n = 0, n2 = 0;
  pose_status st = write_back(&a, &bytes, &n);
  if (st == POSE_OK) {
    if (pose_st_parse(bytes, n, &b) != POSE_OK) __builtin_trap();
    check_same(&a, &b);
    if (write_back(&b, &bytes2, &n2) != POSE_OK) __builtin_trap();
    if (n != n2 || memcmp(bytes, bytes2, n) != 0) __builtin_trap();
    pose_st_file_free(&b);
  } else if (st != POSE_ERR_OUT_OF_MEMORY && st != POSE_ERR_INVALID_ARGUMENT) {
    __builtin_trap();
  }
  pose_free(bytes);
  pose_free(bytes2);
  pose_st_file_free(&a);
  return 0;
}
