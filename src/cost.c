/* The complexity model of slide 7 as an API: exact counts for one forward call. */
#include "pose_internal.h"

/* Positions 0, k, 2k, ... < n attended, summed over the n queries (causal: those <= i). */
static bool strided_pairs(uint64_t n, uint64_t k, bool causal, uint64_t *out) {
  __extension__ typedef unsigned __int128 u128;
  u128 q = n / k, r = n % k, sum;
  if (causal) {
    /* sum over i < n of (i / k + 1) = n + k * q (q - 1) / 2 + r q, with n = q k + r */
    sum = n + k * q * (q - 1) / 2 + r * q;
  } else {
    sum = (u128)n * (q + (r != 0));
  }
  if (sum > UINT64_MAX) return false;
  *out = (uint64_t)sum;
  return true;
}

pose_status pose_attention_cost(const pose_attention_config *cfg, size_t batch, size_t seq_len,
                                pose_cost *cost) {
  static const char fn[] = "pose_attention_cost";
  POSE_CHECK_PTR(fn, cost);
  POSE_CHECK_NONZERO(fn, batch);
  POSE_CHECK_NONZERO(fn, seq_len);
  pose_attention_config c;
  pose_status st = pose_attention_config_check(fn, cfg, &c);
  if (st != POSE_OK) return st;
  uint64_t k = c.mode == POSE_MODE_FULL       ? 1
               : c.mode == POSE_MODE_ADAPTIVE ? pose_adaptive_skip(seq_len, c.max_seq_len)
                                              : c.skip_factor;
  /* Positions attended, summed over the queries of one sequence and head. */
  uint64_t per_seq = 0;
  const uint64_t n = seq_len, w = c.window;
  if (c.mode == POSE_MODE_LOCAL_STRIDED) {
    for (uint64_t i = 0; i < n; i++) {
      uint64_t last = c.causal ? i : n - 1;
      uint64_t strided = last / k + 1;
      uint64_t lo = i > w ? i - w : 0, hi = w < last - i ? i + w : last;
      /* window positions that are not strided: |[lo, hi]| - |multiples of k in [lo, hi]| */
      uint64_t in_window = hi - lo + 1, multiples = hi / k - (lo + k - 1) / k + 1;
      per_seq += strided + in_window - multiples;
      /* global positions [0, g) that are neither strided nor in the window: [0, g) minus its
       * multiples of k, minus the part of [lo, hi] below g that is not strided */
      uint64_t g = c.num_global < last + 1 ? c.num_global : last + 1;
      if (g > 0) {
        uint64_t extra = g - ((g - 1) / k + 1);
        if (lo < g) {
          uint64_t top = hi < g - 1 ? hi : g - 1;
          extra -= top - lo + 1 - (top / k - (lo + k - 1) / k + 1);
        }
        per_seq += extra;
      }
    }
  } else if (c.mode == POSE_MODE_HIERARCHICAL) {
    /* Each level's kept positions, counted once per level (the multiset softmax). */
    for (size_t l = 0; l < c.levels; l++) {
      uint64_t kl = l < 63 && k <= (UINT64_MAX >> l) ? k << l : UINT64_MAX, level;
      if (kl > n) kl = n; /* only position 0: the same count as a step of n */
      if (!strided_pairs(n, kl, c.causal != 0, &level) ||
          __builtin_add_overflow(per_seq, level, &per_seq)) {
        return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: seq_len %zu pairs overflow", fn, seq_len);
      }
    }
  } else if (c.mode == POSE_MODE_IMPORTANCE) {
    /* min(m, n) per query; with causal, the upper bound (the visible count depends on data). */
    uint64_t m = c.top_m ? c.top_m : pose_ceil_div(seq_len, (size_t)k);
    if (m > n) m = n;
    if (__builtin_mul_overflow(n, m, &per_seq)) {
      return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: seq_len %zu pairs overflow", fn, seq_len);
    }
  } else if (!strided_pairs(n, k, c.causal != 0, &per_seq)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: seq_len %zu pairs overflow", fn, seq_len);
  }
  uint64_t keys = per_seq / n + (per_seq % n != 0);
  uint64_t pairs;
  if (__builtin_mul_overflow((uint64_t)batch, (uint64_t)c.num_heads, &pairs) ||
      __builtin_mul_overflow(pairs, per_seq, &pairs)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: batch %zu x seq_len %zu pairs overflow", fn,
                     batch, seq_len);
  }
  double d = (double)c.dim, hd = d / (double)c.num_heads, b = (double)batch;
  double nd = (double)seq_len;
  double kd = c.mode == POSE_MODE_LOCAL_STRIDED || c.mode == POSE_MODE_IMPORTANCE
                  ? nd
                  : (double)pose_ceil_div(seq_len, (size_t)k);
  cost->skip_factor = k;
  cost->keys_per_query = keys;
  cost->attended_pairs = pairs;
  cost->attention_flops = 4.0 * (double)pairs * hd;
  /* Q for every position, K and V for the kept positions only (every position for local
   * attention), proj for the fused layout. */
  double proj = 2.0 * b * nd * d * d + 2.0 * 2.0 * b * kd * d * d;
  if (c.layout == POSE_LAYOUT_QKV_PROJ) proj += 2.0 * b * nd * d * d;
  cost->projection_flops = proj;
  cost->total_flops = cost->attention_flops + proj;
  return POSE_OK;
}
