/*
 * bench_inputs.h -- the structured inputs of `pose_bench --quality`.
 *
 * How much strided attention loses against full attention depends on the data: on white noise
 * every position carries its own information, on real sequences neighbours are related. The
 * quality table therefore runs on inputs with a known structure, so that its error columns say
 * which kind of sequence a skip factor suits. Every generator is deterministic in its seed.
 */
#ifndef BENCH_INPUTS_H
#define BENCH_INPUTS_H

#include <stddef.h>
#include <stdint.h>

typedef enum bench_input {
  BENCH_INPUT_NOISE = 0,  /* uniform in [-1, 1): no structure, the worst case for skipping */
  BENCH_INPUT_SMOOTH = 1, /* low-frequency sinusoids of the position: neighbours are similar */
  BENCH_INPUT_LOCAL = 2,  /* random tokens repeated in runs of 1..8: information is local */
  BENCH_INPUT_COUNT = 3
} bench_input;

/** "noise", "smooth" or "local"; NULL for an unknown value. */
const char *bench_input_name(bench_input kind);

/** Fills x[batch, seq_len, dim] with the input `kind`; each sequence of the batch differs. */
void bench_input_fill(bench_input kind, float *x, size_t batch, size_t seq_len, size_t dim,
                      uint64_t seed);

#endif /* BENCH_INPUTS_H */
