/* A small deterministic generator (xoshiro256** seeded through splitmix64) so that a seeded
 * module has the same weights on every platform; the draws follow PyTorch's default
 * initialisations (not its random stream, which no C library can reproduce bit for bit). */
#include <math.h>

#include "pose_internal.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void pose_rng_seed(pose_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pose_rng_next(pose_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double unit(pose_rng *rng) { return (double)(pose_rng_next(rng) >> 11) * 0x1.0p-53; }

float pose_rng_uniform(pose_rng *rng, float lo, float hi) {
  float v = (float)(lo + (hi - lo) * unit(rng));
  return v < hi ? v : lo; /* rounding to float may reach hi */
}

float pose_rng_normal(pose_rng *rng) {
  double u1 = unit(rng), u2 = unit(rng);
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

void pose_rng_linear(pose_rng *rng, size_t out_features, size_t in_features, float *weight,
                     float *bias) {
  /* kaiming_uniform_(a=sqrt(5)) gives bound sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in);
   * the bias uses 1/sqrt(fan_in) too. */
  float bound = (float)(1.0 / sqrt((double)in_features));
  for (size_t i = 0; i < out_features * in_features; i++) {
    weight[i] = pose_rng_uniform(rng, -bound, bound);
  }
  if (bias != NULL) {
    for (size_t i = 0; i < out_features; i++) bias[i] = pose_rng_uniform(rng, -bound, bound);
  }
}
