/*
 * ref64.h -- plain float64 reference implementations of everything libpose computes, for tests.
 *
 * Clear over fast: straightforward loops, every intermediate in double, no BLAS, nothing shared
 * with src/. They were checked against the PyTorch fixtures in tests/fixtures (the seed's
 * modules): used with a fixture's weights they reproduce its outputs to ~1e-6.
 *
 * Conventions (the same as pose.h):
 *   - Row-major, batch first: activations are [batch, seq_len, dim].
 *   - Weights are float arrays in PyTorch layout: a Linear(in, out) weight is [out, in] and is
 *     applied as y = x . W^T + b. Weights are never copied; the caller keeps them alive.
 *   - Inputs that tests hand to libpose are float; outputs are double, to compare with
 *     assert_close_f64ref (testutil.h). The *_d variants take double inputs, for chaining.
 *   - Output buffers are caller-allocated with the sizes stated; input and output must not
 *     overlap unless stated.
 *   - Misuse (invalid configuration, a length outside 1..seq_len, a token out of range, a
 *     missing weight in the *_bind functions) fails the running cmocka test via test_failf.
 *   - lengths: NULL means every sequence is seq_len long. Otherwise lengths[b] in 1..seq_len is
 *     sequence b's true length: the sequence is computed ALONE on its first lengths[b] positions
 *     (positions at or past it are never read), the adaptive skip factor is computed from
 *     lengths[b], and per-position outputs at positions >= lengths[b] are zero.
 */
#ifndef POSE_TEST_REF64_H
#define POSE_TEST_REF64_H

#include <stddef.h>
#include <stdint.h>

#include "pose.h"

/* ---- kernels ------------------------------------------------------------------------------ */

/** y[rows, out] = x[rows, in] . w^T + b, with w [out, in] (PyTorch layout) and b [out] or NULL. */
void ref64_linear(const float *x, size_t rows, size_t in, const float *w, const float *b,
                  size_t out, double *y);
void ref64_linear_d(const double *x, size_t rows, size_t in, const float *w, const float *b,
                    size_t out, double *y);

/** torch.nn.LayerNorm over the last dimension: (x - mean) / sqrt(var + eps) * gamma + beta,
 *  biased variance (divide by dim). gamma/beta NULL mean 1/0. In place (y == x) allowed for _d. */
void ref64_layer_norm(const float *x, size_t rows, size_t dim, const float *gamma,
                      const float *beta, double eps, double *y);
void ref64_layer_norm_d(const double *x, size_t rows, size_t dim, const float *gamma,
                        const float *beta, double eps, double *y);

/** y = max(x, 0); NaN stays NaN (as torch.relu). In place allowed for _d. */
void ref64_relu(const float *x, size_t n, double *y);
void ref64_relu_d(const double *x, size_t n, double *y);

/** Row-wise softmax of x[rows, cols], max-subtracted. A row whose entries are all -inf gives
 *  zeros (libpose's documented choice; PyTorch would give NaN). In place allowed for _d. */
void ref64_softmax(const float *x, size_t rows, size_t cols, double *y);
void ref64_softmax_d(const double *x, size_t rows, size_t cols, double *y);

/** The slide 5 encoding in exact double arithmetic: pe[pos, 2i] = sin(pos * w_i),
 *  pe[pos, 2i+1] = cos(pos * w_i), w_i = exp(2i * -ln(10000) / dim). pe is [seq_len, dim].
 *  NOTE: PyTorch computes the angle pos * w_i in float32, so at large positions its result
 *  differs from this one by up to ~pos * 2^-24 (1.4e-4 at pos 10000, dim 16): compare PyTorch
 *  fixtures with ref64_positional_encoding_torch instead. dim must be even (as in PyTorch). */
void ref64_positional_encoding(size_t seq_len, size_t dim, double *pe);

/** The slide 5 encoding as PyTorch (AVX2/AVX-512 kernels) computes it: the exponent
 *  (float)(2i) * (float)(-ln(10000) / dim) in float32, w_i = ref64_torch_expf(exponent), the
 *  angle (float)pos * w_i rounded to float32 -- all bit-exact -- then sin/cos of that float
 *  angle in double. Matches PyTorch's float32 table within ~1 ulp (its sinf/cosf error). */
void ref64_positional_encoding_torch(size_t seq_len, size_t dim, double *pe);

/** expf exactly as PyTorch's vectorised CPU kernels compute it (SLEEF expf_u10 with FMA),
 *  bit-for-bit (checked on 331k inputs). It is NOT correctly rounded, and correctly rounded
 *  expf (glibc) differs in the last bit for some of slide 5's frequencies, which moves
 *  sin(pos * w) by up to 3e-5 at pos ~5000 -- beyond the float32 tolerance. Finite inputs in
 *  [-104, 88]; outside it returns 0 / inf as SLEEF does. */
float ref64_torch_expf(float x);

/* ---- attention ---------------------------------------------------------------------------- */

/** One head of strided attention with arbitrary row strides (in elements):
 *    out[i] = sum_j softmax_j(scale * q_i . k_{j*skip}) v_{j*skip},  over j with j*skip < n_keys
 *  for i < n_queries, where row r of q/k/v/out starts at q + r*q_stride etc. and has head_dim
 *  elements. skip >= 1. n_keys == 0 gives zero rows. out must not overlap q, k or v. */
void ref64_attention_head(const double *q, size_t q_stride, size_t n_queries, const double *k,
                          size_t k_stride, const double *v, size_t v_stride, size_t n_keys,
                          size_t skip, size_t head_dim, double scale, double *out,
                          size_t out_stride);

/** The functional attention of slide 2 (pose.h pose_attention): for each batch b,
 *  out[b] = softmax(scale * query[b] . key[b, P]^T) . value[b, P], P = 0, k, 2k, ... < seq_len.
 *  query, key, value and out are [batch, seq_len, dim]. Slide 2 itself uses scale 1. */
void ref64_pose_attention(const float *query, const float *key, const float *value, size_t batch,
                          size_t seq_len, size_t dim, size_t skip_factor, double scale,
                          double *out);

/** Skip factor for a sequence of seq_len positions: POSE_MODE_FULL 1, POSE_MODE_STRIDED
 *  skip_factor, POSE_MODE_ADAPTIVE max(1, seq_len / (max_seq_len / 10)) in integer division
 *  (slide 4; max_seq_len < 10 fails, the seed divides by zero). */
size_t ref64_skip_for(pose_attention_mode mode, size_t skip_factor, size_t max_seq_len,
                      size_t seq_len);

/** Attention weights, as float arrays in state_dict layout. Only the layout's own are used:
 *    POSE_LAYOUT_QKV_PROJ:        qkv_weight [3*dim, dim], qkv_bias [3*dim] or NULL,
 *                                 proj_weight [dim, dim], proj_bias [dim]
 *    POSE_LAYOUT_QUERY_KEY_VALUE: query/key/value _weight [dim, dim] and _bias [dim] */
typedef struct ref64_attention_weights {
  const float *qkv_weight, *qkv_bias, *proj_weight, *proj_bias;
  const float *query_weight, *query_bias;
  const float *key_weight, *key_bias;
  const float *value_weight, *value_bias;
} ref64_attention_weights;

/** Fills *w by looking up prefix + state_dict name ("qkv.weight", ..., or "query.weight", ...)
 *  in weights[0..n) and checking each count. Names not needed are ignored. Fails the test when a
 *  needed tensor is missing or has the wrong count. qkv.bias is required iff cfg->qkv_bias. */
void ref64_attention_bind(const pose_attention_config *cfg, const pose_weight *weights, size_t n,
                          const char *prefix, ref64_attention_weights *w);

/** Multi-head attention module, either layout, any mode (pose.h pose_attention_forward):
 *  x and out are [batch, seq_len, cfg->dim]. Uses cfg's layout, mode, dim, num_heads (must
 *  divide dim; 0 is taken as 1), skip_factor, max_seq_len, qkv_bias and scale (0 means
 *  1/sqrt(dim / num_heads)). Head h uses columns h*head_dim..(h+1)*head_dim of q, k and v (for
 *  QKV_PROJ, q, k, v are the three dim-wide thirds of the qkv output, as slide 1's reshape to
 *  (3, heads, head_dim)). Keys/values are those at positions 0, k, 2k, ... of each sequence.
 *  QKV_PROJ applies proj to the concatenated heads; QUERY_KEY_VALUE has no projection. */
void ref64_attention_forward(const pose_attention_config *cfg, const ref64_attention_weights *w,
                             const float *x, size_t batch, size_t seq_len, const size_t *lengths,
                             double *out);

/* ---- layers and models -------------------------------------------------------------------- */

/** One POSE layer's weights (slide 6 POSELayer state_dict, after the layer's prefix):
 *  attn.query/key/value.weight/bias, ff.0.weight [ff_dim, dim], ff.0.bias [ff_dim],
 *  ff.2.weight [dim, ff_dim], ff.2.bias [dim], norm1/norm2.weight/bias [dim]. */
typedef struct ref64_layer_weights {
  ref64_attention_weights attn; /* QUERY_KEY_VALUE layout */
  const float *ff1_weight, *ff1_bias;
  const float *ff2_weight, *ff2_bias;
  const float *norm1_weight, *norm1_bias;
  const float *norm2_weight, *norm2_bias;
} ref64_layer_weights;

/** A layer, encoder, summarizer or classifier's weights. */
typedef struct ref64_model_weights {
  ref64_layer_weights *layers; /* num_layers entries (malloc'd by ref64_model_bind) */
  size_t num_layers;
  const float *embedding;     /* summarizer: embedding.weight [vocab_size, dim] */
  const float *input_weight;  /* classifier: feature_extractor.weight [dim, input_dim] */
  const float *input_bias;    /* classifier: feature_extractor.bias [dim] */
  const float *output_weight; /* summarizer output_proj.weight [vocab_size, dim];
                                   classifier classifier.weight [num_classes, dim] */
  const float *output_bias;   /* output_proj.bias / classifier.bias */
} ref64_model_weights;

/** Fills *w from state_dict-named weights for cfg->kind: layer names have no prefix
 *  ("attn.query.weight"), encoder names "layers.<i>.", summarizer/classifier
 *  "pose_encoder.layers.<i>." plus embedding / feature_extractor / output_proj / classifier.
 *  Counts are checked against cfg (dim, ff_dim, num_layers, vocab_size, input_dim,
 *  num_classes; the seed's task models use ff_dim = 4 * dim, which cfg must say). Fails the
 *  test on a missing or mis-sized tensor. Release with ref64_model_weights_free. */
void ref64_model_bind(const pose_model_config *cfg, const pose_weight *weights, size_t n,
                      ref64_model_weights *w);

/** Frees what ref64_model_bind allocated (not the weights themselves); NULL-safe. */
void ref64_model_weights_free(ref64_model_weights *w);

/** One post-LN POSE layer on ONE sequence x[n, dim] (slide 6, dropout = identity):
 *    x = LN1(x + attn(x));  x = LN2(x + Linear2(ReLU(Linear1(x))))
 *  attn is QUERY_KEY_VALUE attention with cfg's mode, skip_factor, max_seq_len and num_heads
 *  (0 taken as 1) and scale 1/sqrt(dim / num_heads); LayerNorm eps is cfg->layer_norm_eps as
 *  given (set it: pose_model_config_init gives 1e-5). y may equal x. */
void ref64_layer_forward_d(const pose_model_config *cfg, const ref64_layer_weights *lw,
                           const double *x, size_t n, double *y);

/** cfg->num_layers layers in sequence on ONE sequence x[n, dim] (slide 9). y may equal x. */
void ref64_encoder_forward_d(const pose_model_config *cfg, const ref64_model_weights *w,
                             const double *x, size_t n, double *y);

/** Number of output elements of ref64_model_forward(_tokens) for this batch shape (the same as
 *  pose_model_output_count): layer/encoder batch*seq_len*dim, summarizer
 *  batch*seq_len*vocab_size, classifier batch*num_classes. */
size_t ref64_model_output_count(const pose_model_config *cfg, size_t batch, size_t seq_len);

/** Forward of a layer, encoder or classifier (cfg->kind):
 *    layer/encoder: input [batch, seq_len, dim] -> out [batch, seq_len, dim]; rows past a
 *                   sequence's length are zero.
 *    classifier:    input [batch, seq_len, input_dim] -> feature_extractor -> (+ slide 5
 *                   encoding, float32 as PyTorch, if cfg->positional_encoding) -> encoder ->
 *                   mean over the sequence's valid positions -> classifier -> out
 *                   [batch, num_classes].
 *  See the header comment for lengths. Fails the test for a summarizer. */
void ref64_model_forward(const pose_model_config *cfg, const ref64_model_weights *w,
                         const float *input, size_t batch, size_t seq_len, const size_t *lengths,
                         double *out);

/** Summarizer forward (slide 10): tokens [batch, seq_len] in 0..vocab_size-1 -> embedding ->
 *  (+ slide 5 encoding if cfg->positional_encoding) -> encoder -> output_proj -> logits
 *  [batch, seq_len, vocab_size]; rows past a sequence's length are zero and tokens there are
 *  not read. Fails the test for a token out of range or another kind. */
void ref64_model_forward_tokens(const pose_model_config *cfg, const ref64_model_weights *w,
                                const int64_t *tokens, size_t batch, size_t seq_len,
                                const size_t *lengths, double *out);

#endif /* POSE_TEST_REF64_H */
