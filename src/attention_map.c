/* Attention maps (slide 12): the softmax weights one head gives each query, for a person to look
 * at. The map is materialised as a [seq_len, num_keys] matrix, which the forward pass never does
 * (attention_core.c streams keys through an online softmax), so this is an inspection tool with
 * O(seq_len * num_keys) memory in the caller's buffer, not a fast path. It recomputes what the
 * forward computes from the module's weights rather than hooking into the forward, so that the
 * optimised path stays free of a "record the weights" branch.
 *
 * For a model, the input of the requested layer is rebuilt here with the same math as
 * model_forward.c (input stage, then post-LN layers) on one sequence, through the public
 * attention forward and the unchecked kernels: that keeps this file independent of how the
 * model forward is scheduled. */
#include <math.h>
#include <string.h>

#include "pose_internal.h"

/* Rows of the feed-forward hidden activations [rows, ff_dim] held at once while rebuilding a
 * layer input: bounds the scratch to 256 * ff_dim floats whatever the sequence length. */
#define MAP_FF_ROWS 256

/* Skip factor for a sequence of seq_len positions (the rule of pose_attention_skip_for). */
static size_t attn_skip(const pose_attention_config *c, size_t seq_len) {
  switch (c->mode) {
    case POSE_MODE_FULL: return 1;
    case POSE_MODE_STRIDED:
    case POSE_MODE_LOCAL_STRIDED:
    case POSE_MODE_HIERARCHICAL:
    case POSE_MODE_IMPORTANCE: return c->skip_factor;
    case POSE_MODE_ADAPTIVE: return pose_adaptive_skip(seq_len, c->max_seq_len);
  }
  return 1;
}

/* Step between the map's columns: local and importance attention have every position as a
 * column (the union over queries of their windows and the strided positions, or of the blocks'
 * selections); hierarchical attention the level-0 positions. */
static size_t map_skip(const pose_attention_config *c, size_t seq_len) {
  return c->mode == POSE_MODE_LOCAL_STRIDED || c->mode == POSE_MODE_IMPORTANCE
             ? 1
             : attn_skip(c, seq_len);
}

/* Levels of hierarchical attention that keep level-0 key j (j = 0 is kept by all). */
static size_t levels_keeping(size_t levels, size_t j) {
  size_t c = 1;
  while (c < levels && c < 64 && j % ((size_t)1 << c) == 0) c++;
  return j == 0 ? levels : c;
}

/* True when query i attends position p (beyond the columns: window, global and causal masks). */
static bool map_attends(const pose_attention_config *c, size_t skip, size_t i, size_t p) {
  if (c->causal && p > i) return false;
  if (c->mode != POSE_MODE_LOCAL_STRIDED) return true;
  return p % skip == 0 || p < c->num_global || (p <= i ? i - p : p - i) <= c->window;
}

size_t pose_attention_map_keys(const pose_attention_module *a, size_t seq_len) {
  return pose_ceil_div(seq_len, map_skip(&a->cfg, seq_len));
}

pose_status pose_attention_map_check(const char *fn, const pose_attention_module *a, size_t seq_len,
                                     size_t head, size_t probs_count, size_t positions_count) {
  const size_t d = a->cfg.dim, hd = a->head_dim, skip = map_skip(&a->cfg, seq_len);
  const size_t nk = pose_ceil_div(seq_len, skip);
  if (head >= a->cfg.num_heads) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: head is %zu, the attention has %zu", fn, head,
                     a->cfg.num_heads);
  }
  /* Sizes the projections and the score product use: x rows read with a stride of skip * dim,
   * the map itself, and the scratch for this head's queries and keys. */
  size_t probs_need, ldk = d, x_count, scratch;
  if (!pose_mul(seq_len, nk, &probs_need) || !pose_mul(probs_need, sizeof(float), &(size_t){0}) ||
      (nk > 1 && !pose_mul(skip, d, &ldk)) || !pose_mul(seq_len, d, &x_count) ||
      !pose_add(seq_len, nk, &scratch) || !pose_mul3(scratch, hd, sizeof(float), &(size_t){0}) ||
      !pose_blas_dims_ok(seq_len, nk, d, ldk, d, nk)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "%s: seq_len %zu with dim %zu gives a map too large to compute", fn, seq_len,
                     d);
  }
  pose_status st = pose_check_count(fn, "probs_count", probs_count, probs_need);
  if (st == POSE_OK) st = pose_check_count(fn, "positions_count", positions_count, nk);
  return st;
}

pose_status pose_attention_map_run(const pose_attention_module *a, const float *x, size_t seq_len,
                                   size_t head, float *probs, size_t *positions) {
  const size_t d = a->cfg.dim, hd = a->head_dim, off = head * hd;
  const size_t skip = map_skip(&a->cfg, seq_len), nk = pose_ceil_div(seq_len, skip);
  float *q = pose_alloc_floats((seq_len + nk) * hd);
  if (q == NULL) return POSE_ERR_OUT_OF_MEMORY;
  float *k = q + seq_len * hd;
  /* Only this head's slice of the projections: rows off..off+hd of the query and key weights
   * give columns off..off+hd of q and k, which is all head `head` reads. */
  const float *wq, *bq, *wk, *bk;
  if (a->cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    wq = a->qkv_w + off * d;
    wk = a->qkv_w + (d + off) * d;
    bq = a->qkv_b ? a->qkv_b + off : NULL;
    bk = a->qkv_b ? a->qkv_b + d + off : NULL;
  } else {
    wq = a->q_w + off * d, bq = a->q_b + off;
    wk = a->k_w + off * d, bk = a->k_b + off;
  }
  pose_linear_rows(x, d, seq_len, d, wq, bq, hd, q, hd);
  /* Keys only at the kept positions 0, skip, 2 skip, ...: a leading dimension of skip * dim.
   * With one key the stride is never used, and a skip factor far past the length must not
   * overflow it. */
  pose_linear_rows(x, nk > 1 ? skip * d : d, nk, d, wk, bk, hd, k, hd);
  /* Nothing has been written to the caller's buffers before this point, so every failure
   * above leaves them untouched. */
  /* Importance: each query block's selection, as the forward makes it (attention_core.c). */
  size_t *sel = NULL;
  double *dbl = NULL;
  unsigned char *chosen = NULL;
  if (a->cfg.mode == POSE_MODE_IMPORTANCE) {
    sel = pose_calloc(nk, sizeof *sel);
    dbl = pose_calloc(nk + hd, sizeof *dbl);
    chosen = pose_calloc(nk, 1);
    if (sel == NULL || dbl == NULL || chosen == NULL) {
      pose_free(sel), pose_free(dbl), pose_free(chosen), pose_free(q);
      return POSE_ERR_OUT_OF_MEMORY;
    }
  }
  pose_sgemm(false, true, seq_len, nk, hd, a->scale, q, hd, k, hd, 0.0f, probs, nk);
  const size_t attn_k = attn_skip(&a->cfg, seq_len), qb = pose_attention_tile_queries();
  for (size_t i = 0; i < seq_len; i++) {
    float *row = probs + i * nk;
    if (chosen != NULL && i % qb == 0) {
      const size_t m = seq_len - i < qb ? seq_len - i : qb, i_last = i + m - 1;
      const size_t ncand = a->cfg.causal && i_last + 1 < nk ? i_last + 1 : nk;
      size_t top = a->cfg.top_m ? a->cfg.top_m : pose_ceil_div(seq_len, a->cfg.skip_factor);
      size_t cnt = pose_importance_select(q + i * hd, hd, m, k, hd, ncand, hd, a->scale, top, dbl,
                                          dbl + hd, sel);
      memset(chosen, 0, nk);
      for (size_t r = 0; r < cnt; r++) chosen[sel[r]] = 1;
    }
    if (a->cfg.causal || a->cfg.mode == POSE_MODE_LOCAL_STRIDED || chosen != NULL) {
      for (size_t j = 0; j < nk; j++) {
        if (!map_attends(&a->cfg, attn_k, i, j * skip) || (chosen != NULL && !chosen[j])) {
          row[j] = -INFINITY;
        }
      }
    }
    /* An all -inf row (an importance row that attends nothing) gives zeros. */
    pose_softmax_row(row, nk);
    if (a->cfg.mode == POSE_MODE_HIERARCHICAL && a->cfg.levels > 1) {
      /* The multiset softmax: a position kept by c levels weighs c times. */
      double sum = 0.0;
      for (size_t j = 0; j < nk; j++)
        sum += (double)row[j] * (double)levels_keeping(a->cfg.levels, j);
      for (size_t j = 0; j < nk; j++) {
        row[j] = (float)((double)row[j] * (double)levels_keeping(a->cfg.levels, j) / sum);
      }
    }
  }
  for (size_t j = 0; j < nk; j++) positions[j] = j * skip;
  pose_free(sel), pose_free(dbl), pose_free(chosen);
  pose_free(q);
  return POSE_OK;
}

pose_status pose_attention_map_size(const pose_attention_module *attn, size_t seq_len,
                                    size_t *num_keys) {
  static const char fn[] = "pose_attention_map_size";
  POSE_CHECK_PTR(fn, attn);
  POSE_CHECK_PTR(fn, num_keys);
  POSE_CHECK_NONZERO(fn, seq_len);
  *num_keys = pose_attention_map_keys(attn, seq_len);
  return POSE_OK;
}

pose_status pose_attention_map(const pose_attention_module *attn, const float *x, size_t seq_len,
                               size_t head, float *probs, size_t probs_count, size_t *positions,
                               size_t positions_count) {
  static const char fn[] = "pose_attention_map";
  POSE_CHECK_PTR(fn, attn);
  POSE_CHECK_PTR(fn, x);
  POSE_CHECK_PTR(fn, probs);
  POSE_CHECK_PTR(fn, positions);
  POSE_CHECK_NONZERO(fn, seq_len);
  pose_status st = pose_attention_map_check(fn, attn, seq_len, head, probs_count, positions_count);
  if (st != POSE_OK) return st;
  return pose_attention_map_run(attn, x, seq_len, head, probs, positions);
}

/* ---- models -------------------------------------------------------------------------------- */

static pose_status check_layer_index(const char *fn, const pose_model *m, size_t layer_index) {
  if (layer_index >= m->cfg.num_layers) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: layer_index is %zu, the model has %zu", fn,
                     layer_index, m->cfg.num_layers);
  }
  return POSE_OK;
}

pose_status pose_model_attention_map_size(const pose_model *model, size_t layer_index,
                                          size_t seq_len, size_t *num_keys) {
  static const char fn[] = "pose_model_attention_map_size";
  POSE_CHECK_PTR(fn, model);
  POSE_CHECK_PTR(fn, num_keys);
  POSE_CHECK_NONZERO(fn, seq_len);
  pose_status st = check_layer_index(fn, model, layer_index);
  if (st != POSE_OK) return st;
  *num_keys = pose_attention_map_keys(&model->layers[layer_index].attn, seq_len);
  return POSE_OK;
}

/* Exactly one of input and tokens, the one the model's kind takes; tokens in range. */
static pose_status check_model_input(const char *fn, const pose_model *m, const float *input,
                                     const int64_t *tokens, size_t seq_len) {
  const pose_model_config *c = &m->cfg;
  const char *kind = pose_model_kind_string(c->kind);
  if (c->kind == POSE_MODEL_SUMMARIZER) {
    if (input != NULL) {
      return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                       "%s: input is not NULL, but a summarizer takes tokens (pass input NULL)",
                       fn);
    }
    POSE_CHECK_PTR(fn, tokens);
    for (size_t p = 0; p < seq_len; p++) {
      if (tokens[p] < 0 || (uint64_t)tokens[p] >= c->vocab_size) {
        return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                         "%s: tokens[%zu] is %lld, need 0..%zu (vocab_size %zu)", fn, p,
                         (long long)tokens[p], c->vocab_size - 1, c->vocab_size);
      }
    }
    return POSE_OK;
  }
  if (tokens != NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: tokens is not NULL, but this %s takes float input (pass tokens NULL)", fn,
                     kind);
  }
  POSE_CHECK_PTR(fn, input);
  return POSE_OK;
}

/* Sizes of rebuilding the input of layer layer_index: x [seq_len, dim], the attention output
 * [seq_len, dim] and the feed-forward hidden [MAP_FF_ROWS, ff_dim]; *floats is their total, 0
 * when nothing needs rebuilding (a layer or encoder's layer 0 reads the caller's input). */
static pose_status plan_layer_input(const char *fn, const pose_model *m, size_t layer_index,
                                    size_t seq_len, size_t *floats) {
  const pose_model_config *c = &m->cfg;
  const size_t d = c->dim, f = c->ff_dim;
  const bool stage = c->kind == POSE_MODEL_SUMMARIZER || c->kind == POSE_MODEL_CLASSIFIER;
  size_t xd, in_count, total = 0;
  bool ok = pose_mul(seq_len, d, &xd);
  if (ok && c->kind == POSE_MODEL_CLASSIFIER) {
    ok = pose_mul(seq_len, c->input_dim, &in_count) &&
         pose_blas_dims_ok(seq_len, d, c->input_dim, c->input_dim, c->input_dim, d);
  }
  if (ok && (stage || layer_index > 0)) ok = pose_add(total, xd, &total);
  if (ok && layer_index > 0) {
    ok = pose_add(total, xd, &total) && pose_add(total, MAP_FF_ROWS * f, &total) &&
         pose_blas_dims_ok(seq_len, f, d, d, d, f) && pose_blas_dims_ok(seq_len, d, f, f, f, d);
  }
  if (!ok || !pose_mul(total, sizeof(float), &(size_t){0})) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: seq_len %zu is too large for this model", fn,
                     seq_len);
  }
  *floats = total;
  return POSE_OK;
}

/* One post-LN POSE layer on one sequence x[n, dim] in place, as model_forward.c computes it:
 * x = LN1(x + attn(x)); x = LN2(x + ff2(relu(ff0(x)))). tmp holds [n, dim] then
 * [MAP_FF_ROWS, ff_dim]. */
static pose_status layer_forward(const pose_model *m, const pose_layer_weights *L, float *x,
                                 size_t n, float *tmp) {
  const pose_model_config *c = &m->cfg;
  const size_t d = c->dim, f = c->ff_dim;
  float *attn = tmp, *hidden = tmp + n * d;
  pose_status st = pose_attention_forward(&L->attn, x, 1, n, NULL, attn, n * d);
  if (st != POSE_OK) return st;
  for (size_t i = 0; i < n * d; i++) x[i] += attn[i];
  pose_layer_norm_rows(x, n, d, L->norm1_w, L->norm1_b, c->layer_norm_eps, x);
  /* The feed-forward output reuses the attention buffer, which is consumed above. */
  for (size_t r0 = 0; r0 < n; r0 += MAP_FF_ROWS) {
    size_t rows = n - r0 < MAP_FF_ROWS ? n - r0 : MAP_FF_ROWS;
    pose_linear_rows(x + r0 * d, d, rows, d, L->ff0_w, L->ff0_b, f, hidden, f);
    pose_relu_inplace(hidden, rows * f);
    pose_linear_rows(hidden, f, rows, f, L->ff2_w, L->ff2_b, d, attn + r0 * d, d);
  }
  for (size_t i = 0; i < n * d; i++) x[i] += attn[i];
  pose_layer_norm_rows(x, n, d, L->norm2_w, L->norm2_b, c->layer_norm_eps, x);
  return POSE_OK;
}

/* Writes the input of layer layer_index into x[n, dim]: the model's input stage (embedding or
 * feature_extractor, plus the slide 5 encoding when configured), then layers before it. */
static pose_status build_layer_input(const pose_model *m, size_t layer_index, const float *input,
                                     const int64_t *tokens, size_t n, float *x, float *tmp) {
  const pose_model_config *c = &m->cfg;
  const size_t d = c->dim;
  switch (c->kind) {
    case POSE_MODEL_SUMMARIZER:
      for (size_t p = 0; p < n; p++) {
        memcpy(x + p * d, m->embedding + (size_t)tokens[p] * d, d * sizeof(float));
      }
      break;
    case POSE_MODEL_CLASSIFIER:
      pose_linear_rows(input, c->input_dim, n, c->input_dim, m->in_w, m->in_b, d, x, d);
      break;
    case POSE_MODEL_LAYER:
    case POSE_MODEL_ENCODER: memcpy(x, input, n * d * sizeof(float)); break;
  }
  if (c->positional_encoding) pose_posenc_add_rows(x, n, d);
  for (size_t i = 0; i < layer_index; i++) {
    pose_status st = layer_forward(m, &m->layers[i], x, n, tmp);
    if (st != POSE_OK) return st;
  }
  return POSE_OK;
}

pose_status pose_model_attention_map(const pose_model *model, size_t layer_index,
                                     const float *input, const int64_t *tokens, size_t seq_len,
                                     size_t head, float *probs, size_t probs_count,
                                     size_t *positions, size_t positions_count) {
  static const char fn[] = "pose_model_attention_map";
  POSE_CHECK_PTR(fn, model);
  POSE_CHECK_PTR(fn, probs);
  POSE_CHECK_PTR(fn, positions);
  POSE_CHECK_NONZERO(fn, seq_len);
  pose_status st = check_layer_index(fn, model, layer_index);
  if (st == POSE_OK) st = check_model_input(fn, model, input, tokens, seq_len);
  if (st != POSE_OK) return st;
  const pose_attention_module *a = &model->layers[layer_index].attn;
  size_t floats = 0;
  st = pose_attention_map_check(fn, a, seq_len, head, probs_count, positions_count);
  if (st == POSE_OK) st = plan_layer_input(fn, model, layer_index, seq_len, &floats);
  if (st != POSE_OK) return st;
  if (floats == 0) return pose_attention_map_run(a, input, seq_len, head, probs, positions);
  float *x = pose_alloc_floats(floats);
  if (x == NULL) return POSE_ERR_OUT_OF_MEMORY;
  float *tmp = x + seq_len * model->cfg.dim;
  st = build_layer_input(model, layer_index, input, tokens, seq_len, x, tmp);
  if (st == POSE_OK) st = pose_attention_map_run(a, x, seq_len, head, probs, positions);
  pose_free(x);
  return st;
}
