/* Position ids: the slide 5 encoding at arbitrary positions, and the PoSE position-id sampler
 * (Zhu et al., 2023) that teaches a model positions beyond its training window. */
#include <math.h>

#include "pose_internal.h"

/* Positions must be exact in float32, as PyTorch's arange(..., dtype=float) rows are. */
#define MAX_POSITION ((int64_t)1 << 24)

pose_status pose_positional_encoding_at(const int64_t *positions, size_t count, size_t dim,
                                        float *pe, size_t pe_count) {
  static const char fn[] = "pose_positional_encoding_at";
  POSE_CHECK_PTR(fn, positions);
  POSE_CHECK_PTR(fn, pe);
  POSE_CHECK_NONZERO(fn, count);
  POSE_CHECK_NONZERO(fn, dim);
  if (dim % 2 != 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: dim is %zu, need an even width", fn, dim);
  }
  size_t need;
  if (!pose_mul(count, dim, &need)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: count %zu x dim %zu overflow size_t", fn, count,
                     dim);
  }
  pose_status st = pose_check_count(fn, "pe_count", pe_count, need);
  if (st != POSE_OK) return st;
  for (size_t i = 0; i < count; i++) {
    if (positions[i] < 0 || positions[i] >= MAX_POSITION) {
      return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: positions[%zu] is %lld, need 0..%lld", fn, i,
                       (long long)positions[i], (long long)MAX_POSITION - 1);
    }
  }
  for (size_t c = 0; c < dim; c += 2) {
    float w = pose_posenc_frequency(c, dim);
    for (size_t i = 0; i < count; i++) {
      float angle = (float)positions[i] * w;
      pe[i * dim + c] = (float)sin((double)angle);
      pe[i * dim + c + 1] = (float)cos((double)angle);
    }
  }
  return POSE_OK;
}

/* Uniform integer in lo..hi (inclusive), without modulo bias. */
static size_t uniform_between(pose_rng *rng, size_t lo, size_t hi) {
  uint64_t span = (uint64_t)(hi - lo) + 1;
  if (span == 0) return lo + (size_t)pose_rng_next(rng); /* the whole 64-bit range */
  uint64_t limit = UINT64_MAX - UINT64_MAX % span, r;
  do {
    r = pose_rng_next(rng);
  } while (r >= limit);
  return lo + (size_t)(r % span);
}

pose_status pose_sample_position_ids(size_t window, size_t target_len, size_t num_chunks,
                                     uint64_t seed, int64_t *ids, size_t ids_count) {
  static const char fn[] = "pose_sample_position_ids";
  POSE_CHECK_PTR(fn, ids);
  POSE_CHECK_NONZERO(fn, window);
  POSE_CHECK_NONZERO(fn, num_chunks);
  if (num_chunks > window) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: num_chunks is %zu, need at most window %zu (chunks are never empty)", fn,
                     num_chunks, window);
  }
  if (target_len < window || target_len > (size_t)INT64_MAX) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: target_len is %zu, need >= window %zu", fn,
                     target_len, window);
  }
  pose_status st = pose_check_count(fn, "ids_count", ids_count, window);
  if (st != POSE_OK) return st;
  pose_rng rng;
  pose_rng_seed(&rng, seed);
  /* Chunk boundaries: num_chunks - 1 distinct cut points in 1..window-1, drawn by selection
   * sampling (Knuth's algorithm S) so they come out sorted with no extra memory. */
  size_t cuts_left = num_chunks - 1, bias = 0;
  const size_t max_bias = target_len - window;
  for (size_t p = 0; p < window; p++) {
    if (p > 0 && cuts_left > 0) {
      size_t candidates_left = window - p; /* cut points p..window-1 */
      if (uniform_between(&rng, 0, candidates_left - 1) < cuts_left) {
        cuts_left--;
        /* Each new chunk skips ahead: u_i uniform in u_{i-1}..target_len - window. */
        bias = uniform_between(&rng, bias, max_bias);
      }
    }
    ids[p] = (int64_t)(p + bias);
  }
  return POSE_OK;
}
