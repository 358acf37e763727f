/*
 * bench_inputs.c -- structured inputs for `pose_bench --quality` (see bench_inputs.h).
 */
#include "bench_inputs.h"

#include <math.h>

/* Sinusoids per channel of the smooth input: a few, so channels differ but stay smooth. */
#define SMOOTH_WAVES 3
/* Longest run of one token in the local input. */
#define LOCAL_MAX_RUN 8

static const double k_two_pi = 6.283185307179586;

/* splitmix64: a tiny generator whose output does not depend on the platform's rand(). */
static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double next_unit(uint64_t *s) {
  return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

const char *bench_input_name(bench_input kind) {
  switch (kind) {
  case BENCH_INPUT_NOISE:
    return "noise";
  case BENCH_INPUT_SMOOTH:
    return "smooth";
  case BENCH_INPUT_LOCAL:
    return "local";
  default:
    return NULL;
  }
}

static void fill_noise(float *x, size_t n, uint64_t *s) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(2.0 * next_unit(s) - 1.0);
}

/* Each channel is a sum of SMOOTH_WAVES sinusoids with 0.5 to 8 cycles over the whole sequence
 * (frequencies relative to seq_len, so the input is as smooth at 4000 positions under adaptive
 * k = 40 as at 1000 under k = 10), random phases, plus noise of amplitude 0.05 so that no two
 * positions are exactly equal. Values stay within about [-1, 1] like the noise input. */
static void fill_smooth(float *x, size_t seq_len, size_t dim, uint64_t *s) {
  for (size_t c = 0; c < dim; c++) {
    double freq[SMOOTH_WAVES], phase[SMOOTH_WAVES];
    for (int w = 0; w < SMOOTH_WAVES; w++) {
      freq[w] = k_two_pi * (0.5 + 7.5 * next_unit(s)) / (double)seq_len;
      phase[w] = k_two_pi * next_unit(s);
    }
    for (size_t t = 0; t < seq_len; t++) {
      double v = 0.0;
      for (int w = 0; w < SMOOTH_WAVES; w++) v += sin(freq[w] * (double)t + phase[w]);
      x[t * dim + c] = (float)(v / SMOOTH_WAVES + 0.05 * (2.0 * next_unit(s) - 1.0));
    }
  }
}

/* A fresh random token vector (uniform in [-1, 1) per channel) repeated for a run of 1 to
 * LOCAL_MAX_RUN positions, then the next. Runs are shorter than a typical skip factor, so most
 * tokens never sit at a kept position 0, k, 2k, ...: strided attention cannot see them. */
static void fill_local(float *x, size_t seq_len, size_t dim, uint64_t *s) {
  size_t t = 0;
  while (t < seq_len) {
    size_t run = 1 + (size_t)(next_u64(s) % LOCAL_MAX_RUN);
    fill_noise(x + t * dim, dim, s);
    for (size_t r = 1; r < run && t + r < seq_len; r++) {
      for (size_t c = 0; c < dim; c++) x[(t + r) * dim + c] = x[t * dim + c];
    }
    t += run;
  }
}

void bench_input_fill(bench_input kind, float *x, size_t batch, size_t seq_len, size_t dim,
                      uint64_t seed) {
  uint64_t s = seed * 0xD1B54A32D192ED03ull + (uint64_t)kind;
  for (size_t b = 0; b < batch; b++) {
    float *xb = x + b * seq_len * dim;
    switch (kind) {
    case BENCH_INPUT_SMOOTH:
      fill_smooth(xb, seq_len, dim, &s);
      break;
    case BENCH_INPUT_LOCAL:
      fill_local(xb, seq_len, dim, &s);
      break;
    default:
      fill_noise(xb, seq_len * dim, &s);
      break;
    }
  }
}
