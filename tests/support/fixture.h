/*
 * fixture.h -- the tests' own safetensors reader, for the PyTorch reference fixtures in
 * tests/fixtures (see tests/fixtures/README.md for the files and their rules).
 *
 * It is deliberately independent of libpose's loader (src/io/): Jansson for the JSON header and
 * plain stdio, so a bug in one shows up as a disagreement with the other. It checks what a test
 * needs to trust the data (sizes, offsets inside the file, shape products) but is not a
 * validator; libpose's loader has the strict checks and its own tests.
 *
 * Tensors are converted on reading: F32, F16, BF16 and F64 become float (f32 set), I64, I32,
 * U8 and BOOL become int64_t (i64 set). Anything else is an error.
 *
 * Error handling: fx_open and fx_open_path fail the running cmocka test (test_failf) with the
 * reason, so a test can use the result without checking it; fx_try_open_path returns NULL and
 * the reason instead, for tests that expect failure or run outside cmocka.
 */
#ifndef POSE_TEST_FIXTURE_H
#define POSE_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pose.h"

#ifndef POSE_FIXTURE_DIR
#  error "POSE_FIXTURE_DIR must be defined (tests/CMakeLists.txt does it)"
#endif

typedef struct fx_tensor {
  char *name;
  char dtype[8]; /* as stored in the file: "F32", "F16", "BF16", "I64", ... */
  size_t ndim;
  size_t shape[8];
  size_t count; /* product of shape (1 for a scalar) */
  float *f32;   /* set for floating dtypes (converted exactly; F64 rounded) */
  int64_t *i64; /* set for integer and bool dtypes */
} fx_tensor;

typedef struct fx_file {
  fx_tensor *t; /* in data order (increasing data_offsets) */
  size_t n;
  json_t *meta; /* the __metadata__ object, or NULL when the file has none */
  char *path;   /* the path the file was read from */
} fx_file;

/** Opens POSE_FIXTURE_DIR "/" name, e.g. fx_open("skipwise_0.io.safetensors"). Fails the test
 *  on any error. Free with fx_close. */
fx_file *fx_open(const char *name);

/** As fx_open for any path (e.g. a file libpose wrote to test_tmp_path()). */
fx_file *fx_open_path(const char *path);

/** As fx_open_path but returns NULL on error and writes why into err (if err_size > 0). */
fx_file *fx_try_open_path(const char *path, char *err, size_t err_size);

/** Tensor by name, or NULL if absent. */
const fx_tensor *fx_get(const fx_file *f, const char *name);

/** Tensor by name; fails the test if absent, or if expected_count is not 0 and differs from
 *  the tensor's element count. */
const fx_tensor *fx_need(const fx_file *f, const char *name, size_t expected_count);

/** Float data of a tensor (fails the test if absent or not floating). */
const float *fx_f32(const fx_file *f, const char *name);

/** Metadata value, or NULL if absent (or if the file has no metadata). Owned by f. */
const char *fx_meta(const fx_file *f, const char *key);

/** Metadata value parsed as a non-negative decimal; fails the test if absent or malformed. */
size_t fx_meta_size(const fx_file *f, const char *key);

/** As fx_meta_size, but returns fallback when the key is absent. */
size_t fx_meta_size_or(const fx_file *f, const char *key, size_t fallback);

/** The "lengths" tensor as a malloc'd size_t array of *n entries (free with free()), or NULL
 *  (and *n = 0) when the file has none. Fails the test on a negative length. n may be NULL. */
size_t *fx_lengths(const fx_file *f, size_t *n);

/** Frees everything; NULL is a no-op. */
void fx_close(fx_file *f);

/** A pose_weight {name, data, count} for every floating tensor of f (F16/BF16 already converted
 *  to float), in file order, for pose_attention_create_from_weights / pose_model_create_from_
 *  weights. The array is malloc'd (free it with free()); names and data point into f, so f must
 *  outlive the array. Never NULL (a 1-element allocation when f has no floating tensors). */
pose_weight *fx_weights(const fx_file *f, size_t *n);

#endif /* POSE_TEST_FIXTURE_H */
