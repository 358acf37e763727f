/* Forward passes of pose_model: the post-LN POSE layer, the encoder stack, and the summarizer
 * and classifier heads. Padded positions (past lengths[b]) are never attended to or pooled and
 * give zero rows; each sequence's result equals running it alone. */
#include <string.h>

#include "pose_internal.h"

/* Rows of one feed-forward task: LN1(x + attn), Linear-ReLU-Linear, LN2(x + FF) on this many
 * rows of one sequence, with the hidden activations [rows, ff_dim] in the worker's own scratch
 * instead of a [B*N, ff_dim] buffer. 256 rows beat 128 on the seed's classifier and summarizer
 * (0.129 s against 0.135 s, 1.05 s against 1.13 s at batch 8): fewer repacks of the FF weights. */
#define FF_ROWS 256

/* Scratch of one forward: attention output [B*N, D], the attention's own scratch, and per
 * worker the feed-forward hidden [FF_ROWS, F] and output [FF_ROWS, D]. */
typedef struct fwd_scratch {
  float *attn_out, *attn, *ff;
  pose_attn_plan plan;
  size_t ff_floats; /* per worker */
} fwd_scratch;

static pose_status scratch_alloc(const pose_model *m, size_t batch, size_t seq_len, fwd_scratch *s,
                                 float **block) {
  const size_t d = m->cfg.dim, f = m->cfg.ff_dim;
  size_t a, ff, slots, total;
  pose_status st = pose_attention_plan_for(&m->layers[0].attn, batch, seq_len, &s->plan);
  if (st != POSE_OK) return st;
  if (!pose_mul3(batch, seq_len, d, &a) || !pose_add(f, d, &ff) || !pose_mul(ff, FF_ROWS, &ff) ||
      !pose_mul(ff, s->plan.workers, &slots) || !pose_add(a, slots, &total) ||
      !pose_add(total, s->plan.floats, &total) || !pose_blas_dims_ok(FF_ROWS, f, d, d, d, f)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "pose_model_forward: batch %zu x seq_len %zu is too large for this model",
                     batch, seq_len);
  }
  *block = pose_alloc_floats(total);
  if (*block == NULL) return POSE_ERR_OUT_OF_MEMORY;
  s->attn_out = *block;
  s->attn = s->attn_out + a;
  s->ff = s->attn + s->plan.floats;
  s->ff_floats = ff;
  return POSE_OK;
}

/* max(x, 0) as a select, not a conditional store: it vectorises, where the branch of
 * pose_relu_inplace mispredicts on every other random sign (10% of the classifier's time).
 * NaN compares false and stays NaN, as in torch.relu. */
static void relu_rows(float *x, size_t count) {
  for (size_t i = 0; i < count; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i];
}

/* The rest of a layer after attention, for one FF_ROWS task. */
typedef struct ff_job {
  const pose_model *m;
  const pose_layer_weights *L;
  float *x;
  const size_t *lengths;
  const fwd_scratch *s;
  size_t seq_len, chunks;
} ff_job;

/* x = LN1(x + attn); x = LN2(x + FF(x)) on rows [r0, r0 + rows) of sequence b. */
static void ff_task(void *arg, size_t task, size_t worker) {
  const ff_job *j = arg;
  const size_t b = task / j->chunks, r0 = (task % j->chunks) * FF_ROWS;
  const size_t len = pose_len_of(j->lengths, b, j->seq_len);
  if (r0 >= len) return;
  const size_t rows = len - r0 < FF_ROWS ? len - r0 : FF_ROWS;
  const pose_model_config *c = &j->m->cfg;
  const pose_layer_weights *L = j->L;
  const size_t d = c->dim, f = c->ff_dim, off = (b * j->seq_len + r0) * d;
  float *x = j->x + off, *hidden = j->s->ff + worker * j->s->ff_floats;
  float *ff_out = hidden + FF_ROWS * f;
  const float *attn = j->s->attn_out + off;
  for (size_t i = 0; i < rows * d; i++) x[i] += attn[i];
  pose_layer_norm_rows(x, rows, d, L->norm1_w, L->norm1_b, c->layer_norm_eps, x);
  pose_linear_serial(x, d, rows, d, L->ff0_w, L->ff0_b, f, hidden, f);
  relu_rows(hidden, rows * f);
  pose_linear_serial(hidden, f, rows, f, L->ff2_w, L->ff2_b, d, ff_out, d);
  for (size_t i = 0; i < rows * d; i++) x[i] += ff_out[i];
  pose_layer_norm_rows(x, rows, d, L->norm2_w, L->norm2_b, c->layer_norm_eps, x);
}

/* One POSE layer on x[B, N, D] in place; padded rows of x are zero on entry and on exit. Every
 * task works on rows of one sequence counted from its first row, so each sequence gives the
 * same bits alone, padded, or in any batch. */
static void layer_run(const pose_model *m, const pose_layer_weights *L, float *x, size_t batch,
                      size_t seq_len, const size_t *lengths, const fwd_scratch *s) {
  pose_attention_run(&L->attn, &s->plan, x, lengths, s->attn_out, s->attn);
  ff_job j = {m, L, x, lengths, s, seq_len, pose_ceil_div(seq_len, FF_ROWS)};
  double flops = 4.0 * (double)(batch * seq_len) * (double)m->cfg.dim * (double)m->cfg.ff_dim;
  pose_parallel_for(batch * j.chunks, flops, ff_task, &j);
}

static void encoder_run(const pose_model *m, float *x, size_t batch, size_t seq_len,
                        const size_t *lengths, const fwd_scratch *s) {
  for (size_t i = 0; i < m->cfg.num_layers; i++) {
    layer_run(m, &m->layers[i], x, batch, seq_len, lengths, s);
  }
}

/* y[b] = x[b] . W^T + bias for each sequence's valid rows (x rows of width in, y rows of width
 * out), as one parallel region tiled from each sequence's first row. */
typedef struct seq_linear {
  const float *x, *w, *bias;
  float *y;
  size_t in, out, seq_len;
  const size_t *lengths;
} seq_linear;

static void describe_seq_linear(const void *ctx, size_t b, pose_linear_job *j) {
  const seq_linear *l = ctx;
  *j = (pose_linear_job){.x = l->x + b * l->seq_len * l->in,
                         .ldx = l->in,
                         .rows = pose_len_of(l->lengths, b, l->seq_len),
                         .in = l->in,
                         .w = l->w,
                         .bias = l->bias,
                         .out = l->out,
                         .y = l->y + b * l->seq_len * l->out,
                         .ldy = l->out};
}

static void per_seq_linear(const float *x, size_t in, const float *w, const float *bias, size_t out,
                           float *y, size_t batch, size_t seq_len, const size_t *lengths) {
  seq_linear l = {x, w, bias, y, in, out, seq_len, lengths};
  pose_linear_many(batch, seq_len, out, describe_seq_linear, &l);
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
    st = scratch_alloc(model, batch, seq_len, &s, &block);
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
  st = scratch_alloc(model, batch, seq_len, &s, &block);
  if (st != POSE_OK) {
    pose_free(x);
    return st;
  }
  if (!pose_blas_dims_ok(n, d, c->input_dim, c->input_dim, c->input_dim, d)) {
    pose_free(block);
    pose_free(x);
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: input exceeds the BLAS integer range", fn);
  }
  per_seq_linear(input, c->input_dim, model->in_w, model->in_b, d, x, batch, seq_len, lengths);
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

pose_status pose_model_forward_tokens(const pose_model *model, const int64_t *tokens, size_t batch,
                                      size_t seq_len, const size_t *lengths, float *out,
                                      size_t out_count) {
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
  st = scratch_alloc(model, batch, seq_len, &s, &block);
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
  per_seq_linear(x, d, model->out_w, model->out_b, c->vocab_size, out, batch, seq_len, lengths);
  zero_padding(out, batch, seq_len, c->vocab_size, lengths);
  pose_free(block);
  pose_free(x);
  return POSE_OK;
}
