/*
 * ref64.c -- float64 reference implementations; see ref64.h for every contract.
 *
 * Written for clarity: plain loops over doubles, fresh scratch per call, no sharing with src/.
 */
#include "ref64.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- scratch --------------------------------------------------------------------------------- */

static double *dalloc(size_t n) {
  double *p = calloc(n ? n : 1, sizeof *p);
  if (p == NULL) test_failf("ref64: out of memory (%zu doubles)", n);
  return p;
}

static void widen(const float *x, size_t n, double *y) {
  for (size_t i = 0; i < n; i++) y[i] = (double)x[i];
}

/* ---- kernels --------------------------------------------------------------------------------- */

void ref64_linear_d(const double *x, size_t rows, size_t in, const float *w, const float *b,
                    size_t out, double *y) {
  for (size_t r = 0; r < rows; r++) {
    for (size_t o = 0; o < out; o++) {
      double acc = b ? (double)b[o] : 0.0;
      for (size_t i = 0; i < in; i++) acc += x[r * in + i] * (double)w[o * in + i];
      y[r * out + o] = acc;
    }
  }
}

void ref64_linear(const float *x, size_t rows, size_t in, const float *w, const float *b,
                  size_t out, double *y) {
  double *xd = dalloc(rows * in);
  widen(x, rows * in, xd);
  ref64_linear_d(xd, rows, in, w, b, out, y);
  free(xd);
}

void ref64_layer_norm_d(const double *x, size_t rows, size_t dim, const float *gamma,
                        const float *beta, double eps, double *y) {
  for (size_t r = 0; r < rows; r++) {
    const double *xr = x + r * dim;
    double *yr = y + r * dim;
    double mean = 0.0, var = 0.0;
    for (size_t i = 0; i < dim; i++) mean += xr[i];
    mean /= (double)dim;
    for (size_t i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
    var /= (double)dim; /* biased, as torch.nn.LayerNorm */
    double inv = 1.0 / sqrt(var + eps);
    for (size_t i = 0; i < dim; i++) {
      double g = gamma ? (double)gamma[i] : 1.0;
      double bb = beta ? (double)beta[i] : 0.0;
      yr[i] = (xr[i] - mean) * inv * g + bb;
    }
  }
}

void ref64_layer_norm(const float *x, size_t rows, size_t dim, const float *gamma,
                      const float *beta, double eps, double *y) {
  double *xd = dalloc(rows * dim);
  widen(x, rows * dim, xd);
  ref64_layer_norm_d(xd, rows, dim, gamma, beta, eps, y);
  free(xd);
}

void ref64_relu_d(const double *x, size_t n, double *y) {
  for (size_t i = 0; i < n; i++) y[i] = (isnan(x[i]) || x[i] > 0.0) ? x[i] : 0.0;
}

void ref64_relu(const float *x, size_t n, double *y) {
  for (size_t i = 0; i < n; i++) y[i] = (isnan(x[i]) || x[i] > 0.0f) ? (double)x[i] : 0.0;
}

void ref64_softmax_d(const double *x, size_t rows, size_t cols, double *y) {
  for (size_t r = 0; r < rows; r++) {
    const double *xr = x + r * cols;
    double *yr = y + r * cols;
    double mx = -INFINITY;
    for (size_t c = 0; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
    if (mx == -INFINITY) { /* nothing to attend to: zeros, not NaN */
      for (size_t c = 0; c < cols; c++) yr[c] = 0.0;
      continue;
    }
    double sum = 0.0;
    for (size_t c = 0; c < cols; c++) {
      yr[c] = exp(xr[c] - mx);
      sum += yr[c];
    }
    for (size_t c = 0; c < cols; c++) yr[c] /= sum;
  }
}

void ref64_softmax(const float *x, size_t rows, size_t cols, double *y) {
  double *xd = dalloc(rows * cols);
  widen(x, rows * cols, xd);
  ref64_softmax_d(xd, rows, cols, y);
  free(xd);
}

/* ---- positional encoding --------------------------------------------------------------------- */

void ref64_positional_encoding(size_t seq_len, size_t dim, double *pe) {
  if (dim % 2 != 0) test_failf("ref64_positional_encoding: dim %zu is odd", dim);
  for (size_t c = 0; c < dim; c += 2) {
    double w = exp((double)c * (-log(10000.0) / (double)dim));
    for (size_t p = 0; p < seq_len; p++) {
      pe[p * dim + c] = sin((double)p * w);
      pe[p * dim + c + 1] = cos((double)p * w);
    }
  }
}

/* SLEEF's xexpf (u10) as PyTorch's AVX2/AVX-512 Vectorized<float>::exp evaluates it, with
 * every multiply-add fused. Each step is its own statement so that no compiler contraction
 * can change the rounding. */
float ref64_torch_expf(float d) {
  if (d < -104.0f) return 0.0f;
  if (d > 88.72283935546875f) return INFINITY;
  float q = rintf(d * 1.442695040888963407359924681001892137426645954152985934135449406931f);
  float s = fmaf(q, -0.693145751953125f, d);
  s = fmaf(q, -1.428606765330187045e-06f, s);
  float u = 0.000198527617612853646278381f;
  u = fmaf(u, s, 0.00139304355252534151077271f);
  u = fmaf(u, s, 0.00833336077630519866943359f);
  u = fmaf(u, s, 0.0416664853692054748535156f);
  u = fmaf(u, s, 0.166666671633720397949219f);
  u = fmaf(u, s, 0.5f);
  float s2 = s * s;
  u = 1.0f + fmaf(s2, u, s);
  return ldexpf(u, (int)q);
}

void ref64_positional_encoding_torch(size_t seq_len, size_t dim, double *pe) {
  if (dim % 2 != 0) test_failf("ref64_positional_encoding_torch: dim %zu is odd", dim);
  /* torch.arange(0, d, 2).float() * (-math.log(10000.0) / d): the Python double scalar is
   * rounded to float32 and the product is a float32 multiply. */
  float scale = (float)(-log(10000.0) / (double)dim);
  for (size_t c = 0; c < dim; c += 2) {
    float e = (float)c * scale;
    float w = ref64_torch_expf(e);
    for (size_t p = 0; p < seq_len; p++) {
      float angle = (float)p * w; /* position * div_term, float32 */
      pe[p * dim + c] = sin((double)angle);
      pe[p * dim + c + 1] = cos((double)angle);
    }
  }
}

/* ---- attention ------------------------------------------------------------------------------- */

void ref64_attention_head(const double *q, size_t q_stride, size_t n_queries, const double *k,
                          size_t k_stride, const double *v, size_t v_stride, size_t n_keys,
                          size_t skip, size_t head_dim, double scale, double *out,
                          size_t out_stride) {
  if (skip == 0) {
    test_failf("ref64_attention_head: skip is 0");
    return; /* not reached; tells static analysers so */
  }
  size_t kept = (n_keys + skip - 1) / skip; /* positions 0, skip, 2*skip, ... < n_keys */
  double *scores = dalloc(kept);
  for (size_t i = 0; i < n_queries; i++) {
    const double *qi = q + i * q_stride;
    double *oi = out + i * out_stride;
    for (size_t d = 0; d < head_dim; d++) oi[d] = 0.0;
    if (kept == 0) continue;
    for (size_t j = 0; j < kept; j++) {
      const double *kj = k + j * skip * k_stride;
      double dot = 0.0;
      for (size_t d = 0; d < head_dim; d++) dot += qi[d] * kj[d];
      scores[j] = scale * dot;
    }
    ref64_softmax_d(scores, 1, kept, scores);
    for (size_t j = 0; j < kept; j++) {
      const double *vj = v + j * skip * v_stride;
      for (size_t d = 0; d < head_dim; d++) oi[d] += scores[j] * vj[d];
    }
  }
  free(scores);
}

void ref64_pose_attention(const float *query, const float *key, const float *value, size_t batch,
                          size_t seq_len, size_t dim, size_t skip_factor, double scale,
                          double *out) {
  size_t per = seq_len * dim;
  double *q = dalloc(per), *k = dalloc(per), *v = dalloc(per);
  for (size_t b = 0; b < batch; b++) {
    widen(query + b * per, per, q);
    widen(key + b * per, per, k);
    widen(value + b * per, per, v);
    ref64_attention_head(q, dim, seq_len, k, dim, v, dim, seq_len, skip_factor, dim, scale,
                         out + b * per, dim);
  }
  free(q);
  free(k);
  free(v);
}

size_t ref64_skip_for(pose_attention_mode mode, size_t skip_factor, size_t max_seq_len,
                      size_t seq_len) {
  switch (mode) {
    case POSE_MODE_FULL: return 1;
    case POSE_MODE_STRIDED:
    case POSE_MODE_LOCAL_STRIDED: /* the strided half of local attention */
    case POSE_MODE_HIERARCHICAL:  /* level 0 */
    case POSE_MODE_IMPORTANCE:    /* the default budget ceil(n / k) */
      if (skip_factor == 0) test_failf("ref64: skip_factor 0");
      return skip_factor;
    case POSE_MODE_ADAPTIVE: {
      size_t tenth = max_seq_len / 10;
      if (tenth == 0) {
        test_failf("ref64: max_seq_len %zu < 10 (the seed divides by 0)", max_seq_len);
        return 1; /* not reached; tells static analysers so */
      }
      size_t k = seq_len / tenth;
      return k > 1 ? k : 1;
    }
  }
  test_failf("ref64: unknown attention mode %d", (int)mode);
}

/* What one attention call needs, from either config type. */
typedef struct attn_params {
  pose_attention_layout layout;
  pose_attention_mode mode;
  size_t dim, num_heads, skip_factor, max_seq_len;
  double scale;
} attn_params;

static attn_params params_from_attention_config(const pose_attention_config *cfg) {
  attn_params p;
  p.layout = cfg->layout;
  p.mode = cfg->mode;
  p.dim = cfg->dim;
  p.num_heads = cfg->num_heads ? cfg->num_heads : 1;
  p.skip_factor = cfg->skip_factor;
  p.max_seq_len = cfg->max_seq_len;
  p.scale = cfg->scale != 0.0f ? (double)cfg->scale : 1.0 / sqrt((double)(p.dim / p.num_heads));
  return p;
}

static attn_params params_from_model_config(const pose_model_config *cfg) {
  attn_params p;
  p.layout = POSE_LAYOUT_QUERY_KEY_VALUE;
  p.mode = cfg->mode;
  p.dim = cfg->dim;
  p.num_heads = cfg->num_heads ? cfg->num_heads : 1;
  p.skip_factor = cfg->skip_factor;
  p.max_seq_len = cfg->max_seq_len;
  p.scale = 1.0 / sqrt((double)(p.dim / p.num_heads));
  return p;
}

/* Attention over ONE sequence x[n, dim]. */
static void attention_seq(const attn_params *p, const ref64_attention_weights *w, const double *x,
                          size_t n, double *out) {
  size_t dim = p->dim, heads = p->num_heads;
  if (dim == 0 || dim % heads != 0)
    test_failf("ref64: num_heads %zu does not divide dim %zu", heads, dim);
  size_t hd = dim / heads;
  size_t skip = ref64_skip_for(p->mode, p->skip_factor, p->max_seq_len, n);
  size_t kept = (n + skip - 1) / skip;
  double *q = dalloc(n * dim), *k = dalloc(kept * dim), *v = dalloc(kept * dim);
  double *ctx = dalloc(n * dim);

  if (p->layout == POSE_LAYOUT_QKV_PROJ) {
    /* slide 1: qkv(x) reshaped to (3, heads, head_dim): q, k, v are the three thirds. */
    double *qkv = dalloc(n * 3 * dim);
    ref64_linear_d(x, n, dim, w->qkv_weight, w->qkv_bias, 3 * dim, qkv);
    for (size_t i = 0; i < n; i++) memcpy(q + i * dim, qkv + i * 3 * dim, dim * sizeof *q);
    for (size_t j = 0; j < kept; j++) {
      memcpy(k + j * dim, qkv + j * skip * 3 * dim + dim, dim * sizeof *k);
      memcpy(v + j * dim, qkv + j * skip * 3 * dim + 2 * dim, dim * sizeof *v);
    }
    free(qkv);
  } else {
    /* slides 3/4: keys and values are projected only at the kept positions. */
    double *xs = dalloc(kept * dim);
    for (size_t j = 0; j < kept; j++) memcpy(xs + j * dim, x + j * skip * dim, dim * sizeof *xs);
    ref64_linear_d(x, n, dim, w->query_weight, w->query_bias, dim, q);
    ref64_linear_d(xs, kept, dim, w->key_weight, w->key_bias, dim, k);
    ref64_linear_d(xs, kept, dim, w->value_weight, w->value_bias, dim, v);
    free(xs);
  }
  for (size_t h = 0; h < heads; h++) {
    ref64_attention_head(q + h * hd, dim, n, k + h * hd, dim, v + h * hd, dim, kept, 1, hd,
                         p->scale, ctx + h * hd, dim);
  }
  if (p->layout == POSE_LAYOUT_QKV_PROJ) {
    ref64_linear_d(ctx, n, dim, w->proj_weight, w->proj_bias, dim, out);
  } else {
    memcpy(out, ctx, n * dim * sizeof *out);
  }
  free(q);
  free(k);
  free(v);
  free(ctx);
}

static size_t length_of(const size_t *lengths, size_t b, size_t seq_len) {
  if (lengths == NULL) return seq_len;
  if (lengths[b] == 0 || lengths[b] > seq_len) {
    test_failf("ref64: lengths[%zu] = %zu outside 1..%zu", b, lengths[b], seq_len);
  }
  return lengths[b];
}

void ref64_attention_forward(const pose_attention_config *cfg, const ref64_attention_weights *w,
                             const float *x, size_t batch, size_t seq_len, const size_t *lengths,
                             double *out) {
  attn_params p = params_from_attention_config(cfg);
  size_t per = seq_len * p.dim;
  double *xd = dalloc(per);
  memset(out, 0, batch * per * sizeof *out);
  for (size_t b = 0; b < batch; b++) {
    size_t len = length_of(lengths, b, seq_len);
    widen(x + b * per, len * p.dim, xd);
    attention_seq(&p, w, xd, len, out + b * per);
  }
  free(xd);
}

/* ---- binding weights by name ----------------------------------------------------------------- */

static const float *lookup(const pose_weight *weights, size_t n, const char *prefix,
                           const char *name, size_t count, int required) {
  char full[512];
  snprintf(full, sizeof full, "%s%s", prefix, name);
  for (size_t i = 0; i < n; i++) {
    if (weights[i].name == NULL || strcmp(weights[i].name, full) != 0) continue;
    if (weights[i].count != count) {
      test_failf("ref64: weight '%s' has %zu elements, expected %zu", full, weights[i].count,
                 count);
    }
    return weights[i].data;
  }
  if (required) test_failf("ref64: weight '%s' missing", full);
  return NULL;
}

void ref64_attention_bind(const pose_attention_config *cfg, const pose_weight *weights, size_t n,
                          const char *prefix, ref64_attention_weights *w) {
  size_t d = cfg->dim;
  memset(w, 0, sizeof *w);
  if (prefix == NULL) prefix = "";
  if (cfg->layout == POSE_LAYOUT_QKV_PROJ) {
    w->qkv_weight = lookup(weights, n, prefix, "qkv.weight", 3 * d * d, 1);
    w->qkv_bias = lookup(weights, n, prefix, "qkv.bias", 3 * d, cfg->qkv_bias != 0);
    w->proj_weight = lookup(weights, n, prefix, "proj.weight", d * d, 1);
    w->proj_bias = lookup(weights, n, prefix, "proj.bias", d, 1);
  } else {
    w->query_weight = lookup(weights, n, prefix, "query.weight", d * d, 1);
    w->query_bias = lookup(weights, n, prefix, "query.bias", d, 1);
    w->key_weight = lookup(weights, n, prefix, "key.weight", d * d, 1);
    w->key_bias = lookup(weights, n, prefix, "key.bias", d, 1);
    w->value_weight = lookup(weights, n, prefix, "value.weight", d * d, 1);
    w->value_bias = lookup(weights, n, prefix, "value.bias", d, 1);
  }
}

static void bind_layer(const pose_model_config *cfg, const pose_weight *weights, size_t n,
                       const char *prefix, ref64_layer_weights *lw) {
  size_t d = cfg->dim, ff = cfg->ff_dim;
  char attn_prefix[512];
  snprintf(attn_prefix, sizeof attn_prefix, "%sattn.", prefix);
  pose_attention_config acfg;
  memset(&acfg, 0, sizeof acfg);
  acfg.layout = POSE_LAYOUT_QUERY_KEY_VALUE;
  acfg.dim = d;
  ref64_attention_bind(&acfg, weights, n, attn_prefix, &lw->attn);
  lw->ff1_weight = lookup(weights, n, prefix, "ff.0.weight", ff * d, 1);
  lw->ff1_bias = lookup(weights, n, prefix, "ff.0.bias", ff, 1);
  lw->ff2_weight = lookup(weights, n, prefix, "ff.2.weight", d * ff, 1);
  lw->ff2_bias = lookup(weights, n, prefix, "ff.2.bias", d, 1);
  lw->norm1_weight = lookup(weights, n, prefix, "norm1.weight", d, 1);
  lw->norm1_bias = lookup(weights, n, prefix, "norm1.bias", d, 1);
  lw->norm2_weight = lookup(weights, n, prefix, "norm2.weight", d, 1);
  lw->norm2_bias = lookup(weights, n, prefix, "norm2.bias", d, 1);
}

void ref64_model_bind(const pose_model_config *cfg, const pose_weight *weights, size_t n,
                      ref64_model_weights *w) {
  memset(w, 0, sizeof *w);
  size_t layers = cfg->kind == POSE_MODEL_LAYER ? 1 : cfg->num_layers;
  const char *stack;
  switch (cfg->kind) {
    case POSE_MODEL_LAYER: stack = NULL; break;
    case POSE_MODEL_ENCODER: stack = "layers."; break;
    case POSE_MODEL_SUMMARIZER:
    case POSE_MODEL_CLASSIFIER: stack = "pose_encoder.layers."; break;
    default: test_failf("ref64_model_bind: unknown kind %d", (int)cfg->kind);
  }
  w->num_layers = layers;
  w->layers = calloc(layers ? layers : 1, sizeof *w->layers);
  if (w->layers == NULL) test_failf("ref64: out of memory");
  for (size_t l = 0; l < layers; l++) {
    char prefix[256];
    if (stack == NULL) {
      prefix[0] = '\0';
    } else {
      snprintf(prefix, sizeof prefix, "%s%zu.", stack, l);
    }
    bind_layer(cfg, weights, n, prefix, &w->layers[l]);
  }
  size_t d = cfg->dim;
  if (cfg->kind == POSE_MODEL_SUMMARIZER) {
    w->embedding = lookup(weights, n, "", "embedding.weight", cfg->vocab_size * d, 1);
    w->output_weight = lookup(weights, n, "", "output_proj.weight", cfg->vocab_size * d, 1);
    w->output_bias = lookup(weights, n, "", "output_proj.bias", cfg->vocab_size, 1);
  } else if (cfg->kind == POSE_MODEL_CLASSIFIER) {
    w->input_weight = lookup(weights, n, "", "feature_extractor.weight", d * cfg->input_dim, 1);
    w->input_bias = lookup(weights, n, "", "feature_extractor.bias", d, 1);
    w->output_weight = lookup(weights, n, "", "classifier.weight", cfg->num_classes * d, 1);
    w->output_bias = lookup(weights, n, "", "classifier.bias", cfg->num_classes, 1);
  }
}

void ref64_model_weights_free(ref64_model_weights *w) {
  if (w == NULL) return;
  free(w->layers);
  w->layers = NULL;
  w->num_layers = 0;
}

/* ---- layers and models ----------------------------------------------------------------------- */

void ref64_layer_forward_d(const pose_model_config *cfg, const ref64_layer_weights *lw,
                           const double *x, size_t n, double *y) {
  size_t d = cfg->dim, ff = cfg->ff_dim;
  double eps = (double)cfg->layer_norm_eps;
  attn_params p = params_from_model_config(cfg);
  double *h = dalloc(n * d), *a = dalloc(n * d), *f = dalloc(n * ff);

  attention_seq(&p, &lw->attn, x, n, a);
  for (size_t i = 0; i < n * d; i++) h[i] = x[i] + a[i]; /* dropout is identity in eval */
  ref64_layer_norm_d(h, n, d, lw->norm1_weight, lw->norm1_bias, eps, h);
  ref64_linear_d(h, n, d, lw->ff1_weight, lw->ff1_bias, ff, f);
  ref64_relu_d(f, n * ff, f);
  ref64_linear_d(f, n, ff, lw->ff2_weight, lw->ff2_bias, d, a);
  for (size_t i = 0; i < n * d; i++) h[i] += a[i];
  ref64_layer_norm_d(h, n, d, lw->norm2_weight, lw->norm2_bias, eps, y);
  free(h);
  free(a);
  free(f);
}

void ref64_encoder_forward_d(const pose_model_config *cfg, const ref64_model_weights *w,
                             const double *x, size_t n, double *y) {
  size_t count = n * cfg->dim;
  double *cur = dalloc(count);
  memcpy(cur, x, count * sizeof *cur);
  for (size_t l = 0; l < w->num_layers; l++) ref64_layer_forward_d(cfg, &w->layers[l], cur, n, cur);
  memcpy(y, cur, count * sizeof *y);
  free(cur);
}

size_t ref64_model_output_count(const pose_model_config *cfg, size_t batch, size_t seq_len) {
  switch (cfg->kind) {
    case POSE_MODEL_LAYER:
    case POSE_MODEL_ENCODER: return batch * seq_len * cfg->dim;
    case POSE_MODEL_SUMMARIZER: return batch * seq_len * cfg->vocab_size;
    case POSE_MODEL_CLASSIFIER: return batch * cfg->num_classes;
  }
  test_failf("ref64_model_output_count: unknown kind %d", (int)cfg->kind);
}

/* Adds slide 5's encoding, as PyTorch's float32 table, to x[n, dim]. */
static void add_positional_encoding(double *x, size_t n, size_t dim) {
  double *pe = dalloc(n * dim);
  ref64_positional_encoding_torch(n, dim, pe);
  for (size_t i = 0; i < n * dim; i++) x[i] += (double)(float)pe[i]; /* the table is float32 */
  free(pe);
}

void ref64_model_forward(const pose_model_config *cfg, const ref64_model_weights *w,
                         const float *input, size_t batch, size_t seq_len, const size_t *lengths,
                         double *out) {
  size_t d = cfg->dim;
  if (cfg->kind == POSE_MODEL_SUMMARIZER) {
    test_failf("ref64_model_forward: a summarizer takes tokens (ref64_model_forward_tokens)");
  }
  size_t in_dim = cfg->kind == POSE_MODEL_CLASSIFIER ? cfg->input_dim : d;
  memset(out, 0, ref64_model_output_count(cfg, batch, seq_len) * sizeof *out);
  double *xin = dalloc(seq_len * in_dim), *h = dalloc(seq_len * d);
  for (size_t b = 0; b < batch; b++) {
    size_t len = length_of(lengths, b, seq_len);
    widen(input + b * seq_len * in_dim, len * in_dim, xin);
    switch (cfg->kind) {
      case POSE_MODEL_LAYER:
        ref64_layer_forward_d(cfg, &w->layers[0], xin, len, out + b * seq_len * d);
        break;
      case POSE_MODEL_ENCODER:
        ref64_encoder_forward_d(cfg, w, xin, len, out + b * seq_len * d);
        break;
      case POSE_MODEL_CLASSIFIER: {
        ref64_linear_d(xin, len, in_dim, w->input_weight, w->input_bias, d, h);
        if (cfg->positional_encoding) add_positional_encoding(h, len, d);
        ref64_encoder_forward_d(cfg, w, h, len, h);
        double *pooled = dalloc(d);
        for (size_t i = 0; i < len; i++) {
          for (size_t c = 0; c < d; c++) pooled[c] += h[i * d + c];
        }
        for (size_t c = 0; c < d; c++) pooled[c] /= (double)len; /* mean over valid positions */
        ref64_linear_d(pooled, 1, d, w->output_weight, w->output_bias, cfg->num_classes,
                       out + b * cfg->num_classes);
        free(pooled);
        break;
      }
      default: test_failf("ref64_model_forward: unknown kind %d", (int)cfg->kind);
    }
  }
  free(xin);
  free(h);
}

void ref64_model_forward_tokens(const pose_model_config *cfg, const ref64_model_weights *w,
                                const int64_t *tokens, size_t batch, size_t seq_len,
                                const size_t *lengths, double *out) {
  if (cfg->kind != POSE_MODEL_SUMMARIZER) {
    test_failf("ref64_model_forward_tokens: kind %d is not a summarizer", (int)cfg->kind);
  }
  size_t d = cfg->dim, vocab = cfg->vocab_size;
  memset(out, 0, batch * seq_len * vocab * sizeof *out);
  double *h = dalloc(seq_len * d);
  for (size_t b = 0; b < batch; b++) {
    size_t len = length_of(lengths, b, seq_len);
    for (size_t i = 0; i < len; i++) {
      int64_t t = tokens[b * seq_len + i];
      if (t < 0 || (uint64_t)t >= vocab) {
        test_failf("ref64: token [%zu, %zu] = %lld outside 0..%zu", b, i, (long long)t, vocab - 1);
      }
      widen(w->embedding + (size_t)t * d, d, h + i * d);
    }
    if (cfg->positional_encoding) add_positional_encoding(h, len, d);
    ref64_encoder_forward_d(cfg, w, h, len, h);
    ref64_linear_d(h, len, d, w->output_weight, w->output_bias, vocab, out + b * seq_len * vocab);
  }
  free(h);
}
