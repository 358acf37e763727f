/* Vectorised exp and the fused row pass of the online softmax.
 *
 * After the scores GEMM, every score of full attention goes through one max, one subtract, one
 * exp and one add: at seq 10000 with 8 heads that is 8e8 exps, and the GEMMs spend only ~4
 * cycles per score (128 FLOPs), so the row pass must cost about a cycle per score or it
 * dominates. In the old kernel the row softmax with libm's expf was 36% of all CPU samples of
 * slide 8 (perf), on one core while OpenBLAS's second thread yielded; here it is ~10%.
 *
 * exp(x) = 2^n * p(r): n = round(x / ln 2), r = x - n ln 2 in two FMA steps (Cody-Waite), p a
 * degree-6 polynomial -- SLEEF's expf_u10 coefficients, about 1 ulp. Inputs at or below -104
 * (including -inf) give 0, NaN stays NaN. The scores here are x - max <= 0; inputs up to 88 are
 * handled. The hot loops are compiled three times -- AVX-512F, AVX2+FMA, plain C -- and picked
 * at run time (no -march flag needed for the build), so any x86-64 runs the library. */
#include <math.h>
#include <stdatomic.h>

#include "pose_internal.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define POSE_X86_SIMD 1
#  include <immintrin.h>
#endif

#define EXP_LO -104.0f /* below: 2^n underflows to 0 */
#define EXP_HI 88.0f
#define LOG2E 1.442695040888963407359924681001892137426645954152985934135449406931f
#define LN2_HI 0.693145751953125f
#define LN2_LO 1.428606765330187045e-06f
#define C5 0.000198527617612853646278381f
#define C4 0.00139304355252534151077271f
#define C3 0.00833336077630519866943359f
#define C2 0.0416664853692054748535156f
#define C1 0.166666671633720397949219f
#define C0 0.5f

/* ---- plain C ---------------------------------------------------------------------------- */

static float exp_scalar(float x) {
  if (!(x > EXP_LO)) return x != x ? x : 0.0f;
  if (x > EXP_HI) x = EXP_HI;
  float n = rintf(x * LOG2E);
  float r = fmaf(n, -LN2_HI, x);
  r = fmaf(n, -LN2_LO, r);
  float u = fmaf(fmaf(fmaf(fmaf(fmaf(C5, r, C4), r, C3), r, C2), r, C1), r, C0);
  u = 1.0f + fmaf(r * r, u, r);
  return ldexpf(u, (int)n);
}

static float max_scalar(const float *x, size_t n) {
  float m = -INFINITY;
  for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

static float exp_sum_scalar(float *x, size_t n, float shift) {
  float acc[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t j = 0; j < 8; j++) {
      x[i + j] = exp_scalar(x[i + j] - shift);
      acc[j] += x[i + j];
    }
  }
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) {
    x[i] = exp_scalar(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

#ifdef POSE_X86_SIMD
/* ---- AVX2 + FMA ------------------------------------------------------------------------- */
#  define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256 exp_avx2(__m256 x) {
  /* max/min return their second operand when either is NaN: x second keeps NaN. */
  __m256 xc = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(LOG2E)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
  __m256 u = _mm256_fmadd_ps(_mm256_set1_ps(C5), r, _mm256_set1_ps(C4));
  u = _mm256_fmadd_ps(u, r, _mm256_set1_ps(C3));
  u = _mm256_fmadd_ps(u, r, _mm256_set1_ps(C2));
  u = _mm256_fmadd_ps(u, r, _mm256_set1_ps(C1));
  u = _mm256_fmadd_ps(u, r, _mm256_set1_ps(C0));
  u = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(r, r), u, r));
  /* 2^n for n in [-126, 127] built in the exponent field; below -87 the true value is under
   * 1.7e-38 and is flushed to 0 (the blend), as -inf must be. */
  __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 y = _mm256_mul_ps(u, _mm256_castsi256_ps(e));
  __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  return _mm256_andnot_ps(tiny, y);
}

AVX2 static float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

AVX2 static float max_avx2(const float *x, size_t n) {
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
  }
  m0 = _mm256_max_ps(m0, m1);
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  float m = _mm_cvtss_f32(s);
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

AVX2 static float exp_sum_avx2(float *x, size_t n, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 e0 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
    __m256 e1 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), sh));
    _mm256_storeu_ps(x + i, e0);
    _mm256_storeu_ps(x + i + 8, e1);
    a0 = _mm256_add_ps(a0, e0);
    a1 = _mm256_add_ps(a1, e1);
  }
  if (i + 8 <= n) {
    __m256 e0 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
    _mm256_storeu_ps(x + i, e0);
    a0 = _mm256_add_ps(a0, e0);
    i += 8;
  }
  if (i < n) {
    /* Tail through a padded copy: lanes past n hold -inf, whose exp adds 0. */
    float t[8];
    for (size_t j = 0; j < 8; j++) t[j] = i + j < n ? x[i + j] : -INFINITY;
    __m256 e0 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(t), sh));
    _mm256_storeu_ps(t, e0);
    for (size_t j = 0; i + j < n; j++) x[i + j] = t[j];
    a1 = _mm256_add_ps(a1, e0);
  }
  return hsum_avx2(_mm256_add_ps(a0, a1));
}

/* ---- AVX-512F --------------------------------------------------------------------------- */
#  define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512 exp_avx512(__m512 x) {
  /* scalef computes u * 2^n with IEEE underflow, so no special case is needed below -87. */
  x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
  __m512 u = _mm512_fmadd_ps(_mm512_set1_ps(C5), r, _mm512_set1_ps(C4));
  u = _mm512_fmadd_ps(u, r, _mm512_set1_ps(C3));
  u = _mm512_fmadd_ps(u, r, _mm512_set1_ps(C2));
  u = _mm512_fmadd_ps(u, r, _mm512_set1_ps(C1));
  u = _mm512_fmadd_ps(u, r, _mm512_set1_ps(C0));
  u = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_mul_ps(r, r), u, r));
  return _mm512_scalef_ps(u, n);
}

AVX512 static float max_avx512(const float *x, size_t n) {
  __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
  }
  for (; i + 16 <= n; i += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
  if (i < n) {
    __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
    m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

AVX512 static float exp_sum_avx512(float *x, size_t n, float shift) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 e0 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh));
    __m512 e1 = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), sh));
    _mm512_storeu_ps(x + i, e0);
    _mm512_storeu_ps(x + i + 16, e1);
    a0 = _mm512_add_ps(a0, e0);
    a1 = _mm512_add_ps(a1, e1);
  }
  for (; i < n; i += 16) {
    /* Masked tail: lanes past n load -inf, whose exp is 0, and are not stored. */
    __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 s = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i);
    __m512 e = exp_avx512(_mm512_sub_ps(s, sh));
    _mm512_mask_storeu_ps(x + i, k, e);
    a0 = _mm512_add_ps(a0, e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}
#endif /* POSE_X86_SIMD */

/* ---- dispatch --------------------------------------------------------------------------- */

typedef struct simd_ops {
  float (*max)(const float *x, size_t n);
  float (*exp_sum)(float *x, size_t n, float shift);
} simd_ops;

static const simd_ops ops_by_level[] = {
    {max_scalar, exp_sum_scalar},
#ifdef POSE_X86_SIMD
    {max_avx2, exp_sum_avx2},
    {max_avx512, exp_sum_avx512},
#endif
};

/* -1 until the first use picks the best level the CPU supports. */
static atomic_int g_level = -1;

static int best_level(void) {
#ifdef POSE_X86_SIMD
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return POSE_SIMD_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return POSE_SIMD_AVX2;
#endif
  return POSE_SIMD_SCALAR;
}

static const simd_ops *ops(void) {
  int level = atomic_load_explicit(&g_level, memory_order_relaxed);
  if (level < 0) {
    level = best_level();
    atomic_store_explicit(&g_level, level, memory_order_relaxed);
  }
  return &ops_by_level[level];
}

int pose_simd_set_level(int level) {
  int best = best_level();
  if (level < 0 || level > best) level = best;
  atomic_store_explicit(&g_level, level, memory_order_relaxed);
  return level;
}

float pose_exp_shift_sum(float *x, size_t n, float shift) { return ops()->exp_sum(x, n, shift); }

float pose_row_max(const float *x, size_t n) { return ops()->max(x, n); }

float pose_online_softmax_row(float *s, size_t n, float *m, double *l) {
  const simd_ops *o = ops();
  float m_old = *m, tile_max = o->max(s, n);
  float m_new = tile_max > m_old ? tile_max : m_old;
  if (m_new == -INFINITY) {
    /* Nothing to attend to yet: weights 0, not the NaN of exp(-inf - -inf). */
    for (size_t i = 0; i < n; i++) s[i] = 0.0f;
    return 1.0f;
  }
  float sum = o->exp_sum(s, n, m_new);
  float alpha = m_new == m_old ? 1.0f : exp_scalar(m_old - m_new);
  *m = m_new;
  *l = *l * alpha + sum;
  return alpha;
}
