/* Forward passes of pose_model: the post-LN POSE layer, the encoder stack, and the summarizer
 * and classifier heads. Padded positions (past lengths[b]) are never attended to or pooled and
 * give zero rows; each sequence's result equals running it alone. */
#include <string.h>

#include "pose_internal.h"

/* Scratch of one forward: attention output [B*N, D], feed-forward hidden [rows, F] and output
 * [rows, D] where rows is B*N unpadded or N per sequence when padded, and the attention's own. */
typedef struct fwd_scratch {
  float *attn_out, *hidden, *ff_out, *attn;
} fwd_scratch;

static pose_status scratch_alloc(const pose_model *m, size_t batch, size_t seq_len,
                                 const size_t *lengths, fwd_scratch *s, float **block) {
  const size_t d = m->cfg.dim, f = m->cfg.ff_dim;
  size_t rows = lengths == NULL ? batch * seq_len : seq_len; /* B*N checked by the caller */
  size_t attn_floats, a, h, o, total;
  pose_status st = pose_attention_scratch(&m->layers[0].attn, seq_len, &attn_floats);
  if (st != POSE_OK) return st;
  if (!pose_mul3(batch, seq_len, d, &a) || !pose_mul(rows, f, &h) || !pose_mul(rows, d, &o) ||
      !pose_add(a, h, &total) || !pose_add(total, o, &total) ||
      !pose_add(total, attn_floats, &total) || !pose_blas_dims_ok(rows, f, d, d, d, f)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "pose_model_forward: batch %zu x seq_len %zu is too large for this model",
                     batch, seq_len);
  }
  *block = pose_alloc_floats(total);
  if (*block == NULL) return POSE_ERR_OUT_OF_MEMORY;
  s->attn_out = *block;
  s->hidden = s->attn_out + a;
  s->ff_out = s->hidden + h;
  s->attn = s->ff_out + o;
  return POSE_OK;
}

/* x[rows, D] = LN2(x + FF(x)) with FF = Linear-ReLU-Linear. */
static void feed_forward(const pose_model *m, const pose_layer_weights *L, float *x, size_t rows,
                         const fwd_scratch *s) {
  const size_t d = m->cfg.dim, f = m->cfg.ff_dim;
  pose_linear_rows(x, d, rows, d, L->ff0_w, L->ff0_b, f, s->hidden, f);
  pose_relu_inplace(s->hidden, rows * f);
  pose_linear_rows(s->hidden, f, rows, f, L->ff2_w, L->ff2_b, d, s->ff_out, d);
  for (size_t i = 0; i < rows * d; i++) x[i] += s->ff_out[i];
  pose_layer_norm_rows(x, rows, d, L->norm2_w, L->norm2_b, m->cfg.layer_norm_eps, x);
}

/* One POSE layer on x[B, N, D] in place; padded rows of x are zero on entry and on exit. */
static void layer_run(const pose_model *m, const pose_layer_weights *L, float *x, size_t batch,
                      size_t seq_len, const size_t *lengths, const fwd_scratch *s) {
  const size_t d = m->cfg.dim;
  const float eps = m->cfg.layer_norm_eps;
  pose_attention_run(&L->attn, x, batch, seq_len, lengths, s->attn_out, s->attn);
  for (size_t b = 0; b < batch; b++) {
    size_t len = pose_len_of(lengths, b, seq_len);
    float *xb = x + b * seq_len * d;
    const float *ab = s->attn_out + b * seq_len * d;
    for (size_t i = 0; i < len * d; i++) xb[i] += ab[i];
    pose_layer_norm_rows(xb, len, d, L->norm1_w, L->norm1_b, eps, xb);
  }
  if (lengths == NULL) {
    feed_forward(m, L, x, batch * seq_len, s); /* one GEMM over the whole batch */
  } else {
    for (size_t b = 0; b < batch; b++) feed_forward(m, L, x + b * seq_len * d, lengths[b], s);
  }
}

static void encoder_run(const pose_model *m, float *x, size_t batch, size_t seq_len,
                        const size_t *lengths, const fwd_scratch *s) {
  for (size_t i = 0; i < m->cfg.num_layers; i++) {
    layer_run(m, &m->layers[i], x, batch, seq_len, lengths, s);
  }
}

static void zero_padding(float *x, size_t batch, size_t seq_len, size_t width,
                         const size_t *lengths) {
  if (lengths == NULL) return;
  for (size_t b = 0; b < batch; b++) {
    size_t len = lengths[b];
    memset(x + (b * seq_len + len) * width, 0, (seq_len - len) * width * sizeof(float));
  }
}

static void add_positions(const pose_model *m, float *x, size_t batch, size_t seq_len,
                          const size_t *lengths) {
  if (!m->cfg.positional_encoding) return;
  for (size_t b = 0; b < batch; b++) {
    pose_posenc_add_rows(x + b * seq_len * m->cfg.dim, pose_len_of(lengths, b, seq_len),
                         m->cfg.dim);
  }
}

pose_status pose_model_output_count(const pose_model *model, size_t batch, size_t seq_len,
                                    size_t *count) {
  static const char fn[] = "pose_model_output_count";
  POSE_CHECK_PTR(fn, model);
  POSE_CHECK_PTR(fn, count);
  POSE_CHECK_NONZERO(fn, batch);
  POSE_CHECK_NONZERO(fn, seq_len);
  const pose_model_config *c = &model->cfg;
  switch (c->kind) {
    case POSE_MODEL_LAYER:
    case POSE_MODEL_ENCODER: return pose_count3(fn, batch, seq_len, c->dim, count);
    case POSE_MODEL_SUMMARIZER: return pose_count3(fn, batch, seq_len, c->vocab_size, count);
    case POSE_MODEL_CLASSIFIER: return pose_count3(fn, batch, 1, c->num_classes, count);
  }
  return pose_fail(POSE_ERR_INTERNAL, "%s: unknown model kind", fn);
}

/* Checks shared by both forward entry points. */
static pose_status check_forward(const char *fn, const pose_model *m, const void *input,
                                 size_t batch, size_t seq_len, const size_t *lengths,
                                 const float *out, size_t out_count) {
  POSE_CHECK_PTR(fn, m);
  POSE_CHECK_PTR(fn, input);
  POSE_CHECK_PTR(fn, out);
  POSE_CHECK_NONZERO(fn, batch);
  POSE_CHECK_NONZERO(fn, seq_len);
  size_t need, in_need;
  size_t in_width = m->cfg.kind == POSE_MODEL_CLASSIFIER   ? m->cfg.input_dim
                    : m->cfg.kind == POSE_MODEL_SUMMARIZER ? 1
                                                           : m->cfg.dim;
  pose_status st = pose_model_output_count(m, batch, seq_len, &need);
  if (st == POSE_OK) st = pose_count3(fn, batch, seq_len, in_width, &in_need);
  if (st == POSE_OK) st = pose_check_count(fn, "out_count", out_count, need);
  if (st == POSE_OK) st = pose_check_lengths(fn, lengths, batch, seq_len);
  return st;
}

pose_status pose_model_forward(const pose_model *model, const float *input, size_t batch,
                               size_t seq_len, const size_t *lengths, float *out,
                               size_t out_count) {
  static const char fn[] = "pose_model_forward";
  pose_status st = check_forward(fn, model, input, batch, seq_len, lengths, out, out_count);
  if (st != POSE_OK) return st;
  const pose_model_config *c = &model->cfg;
  if (c->kind == POSE_MODEL_SUMMARIZER) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: a summarizer takes token ids: use pose_model_forward_tokens", fn);
  }
  fwd_scratch s;
  float *block;
  const size_t d = c->dim, n = batch * seq_len;
  if (c->kind != POSE_MODEL_CLASSIFIER) {
    /* The output buffer is the working buffer. */
    st = scratch_alloc(model, batch, seq_len, lengths, &s, &block);
    if (st != POSE_OK) return st;
    memmove(out, input, n * d * sizeof(float));
    zero_padding(out, batch, seq_len, d, lengths);
    encoder_run(model, out, batch, seq_len, lengths, &s);
    pose_free(block);
    return POSE_OK;
  }
  /* Classifier: x = feature_extractor(input), encoder, mean over valid positions, classifier. */
  float *x = pose_alloc_floats(n * d);
  if (x == NULL) return POSE_ERR_OUT_OF_MEMORY;
  st = scratch_alloc(model, batch, seq_len, lengths, &s, &block);
  if (st != POSE_OK) {
    pose_free(x);
    return st;
  }
  if (!pose_blas_dims_ok(n, d, c->input_dim, c->input_dim, c->input_dim, d)) {
    pose_free(block);
    pose_free(x);
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: input exceeds the BLAS integer range", fn);
  }
  pose_linear_rows(input, c->input_dim, n, c->input_dim, model->in_w, model->in_b, d, x, d);
  zero_padding(x, batch, seq_len, d, lengths);
  add_positions(model, x, batch, seq_len, lengths);
  encoder_run(model, x, batch, seq_len, lengths, &s);
  /* Mean over each sequence's valid positions into attn_out ([B*N, D] holds [B, D]). */
  float *pooled = s.attn_out;
  for (size_t b = 0; b < batch; b++) {
    size_t len = pose_len_of(lengths, b, seq_len);
    for (size_t j = 0; j < d; j++) {
      double acc = 0.0;
      for (size_t p = 0; p < len; p++) acc += x[(b * seq_len + p) * d + j];
      pooled[b * d + j] = (float)(acc / (double)len);
    }
  }
  pose_linear_rows(pooled, d, batch, d, model->out_w, model->out_b, c->num_classes, out,
                   c->num_classes);
  pose_free(block);
  pose_free(x);
  return POSE_OK;
}

pose_status pose_model_forward_tokens(const pose_model *model, const int64_t *tokens,
                                      size_t batch, size_t seq_len, const size_t *lengths,
                                      float *out, size_t out_count) {
  static const char fn[] = "pose_model_forward_tokens";
  pose_status st = check_forward(fn, model, tokens, batch, seq_len, lengths, out, out_count);
  if (st != POSE_OK) return st;
  const pose_model_config *c = &model->cfg;
  if (c->kind != POSE_MODEL_SUMMARIZER) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: a %s takes float input: use pose_model_forward", fn,
                     pose_model_kind_string(c->kind));
  }
  for (size_t b = 0; b < batch; b++) {
    size_t len = pose_len_of(lengths, b, seq_len);
    for (size_t p = 0; p < len; p++) {
      int64_t t = tokens[b * seq_len + p];
      if (t < 0 || (uint64_t)t >= c->vocab_size) {
        return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                         "%s: tokens[%zu][%zu] is %lld, need 0..%zu (vocab_size %zu)", fn, b, p,
                         (long long)t, c->vocab_size - 1, c->vocab_size);
      }
    }
  }
  const size_t d = c->dim, n = batch * seq_len;
  float *x = pose_alloc_floats(n * d);
  if (x == NULL) return POSE_ERR_OUT_OF_MEMORY;
  fwd_scratch s;
  float *block;
  st = scratch_alloc(model, batch, seq_len, lengths, &s, &block);
  if (st == POSE_OK && !pose_blas_dims_ok(n, c->vocab_size, d, d, d, c->vocab_size)) {
    pose_free(block);
    st = pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: logits exceed the BLAS integer range", fn);
  }
  if (st != POSE_OK) {
    pose_free(x);
    return st;
  }
  for (size_t b = 0; b < batch; b++) {
    size_t len = pose_len_of(lengths, b, seq_len);
    for (size_t p = 0; p < len; p++) {
      size_t t = (size_t)tokens[b * seq_len + p];
      memcpy(x + (b * seq_len + p) * d, model->embedding + t * d, d * sizeof(float));
    }
  }
  zero_padding(x, batch, seq_len, d, lengths);
  add_positions(model, x, batch, seq_len, lengths);
  encoder_run(model, x, batch, seq_len, lengths, &s);
  if (lengths == NULL) {
    pose_linear_rows(x, d, n, d, model->out_w, model->out_b, c->vocab_size, out, c->vocab_size);
  } else {
    for (size_t b = 0; b < batch; b++) {
      pose_linear_rows(x + b * seq_len * d, d, lengths[b], d, model->out_w, model->out_b,
                       c->vocab_size, out + b * seq_len * c->vocab_size, c->vocab_size);
    }
    zero_padding(out, batch, seq_len, c->vocab_size, lengths);
  }
  pose_free(block);
  pose_free(x);
  return POSE_OK;
}
