/* The attention module: slide 1 (fused qkv + proj, multi-head) and slides 3-4 (separate
 * query/key/value) weight layouts, each with full, strided or adaptive attention. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "pose_internal.h"

/* The first published pose_attention_config ended with `seed`; older callers pass at least
 * this much. */
#define ATTN_CONFIG_V1_SIZE (offsetof(pose_attention_config, seed) + sizeof(uint64_t))

const char *pose_attention_mode_string(pose_attention_mode mode) {
  switch (mode) {
    case POSE_MODE_FULL: return "full";
    case POSE_MODE_STRIDED: return "strided";
    case POSE_MODE_ADAPTIVE: return "adaptive";
  }
  return NULL;
}

void pose_attention_config_init(pose_attention_config *cfg) {
  if (cfg == NULL) return;
  memset(cfg, 0, sizeof *cfg);
  cfg->struct_size = sizeof *cfg;
  cfg->mode = POSE_MODE_STRIDED;
  cfg->layout = POSE_LAYOUT_QUERY_KEY_VALUE;
  cfg->dim = 64;
  cfg->num_heads = 1;
  cfg->skip_factor = 2;
  cfg->max_seq_len = 1000;
  cfg->qkv_bias = 0;
  cfg->scale = 0.0f;
  cfg->seed = 0;
}

pose_status pose_attention_config_check(const char *fn, const pose_attention_config *cfg,
                                        pose_attention_config *norm) {
  POSE_CHECK_PTR(fn, cfg);
  if (cfg->struct_size < ATTN_CONFIG_V1_SIZE) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config struct_size is %zu, need >= %zu (call "
                     "pose_attention_config_init first)",
                     fn, cfg->struct_size, (size_t)ATTN_CONFIG_V1_SIZE);
  }
  pose_attention_config c;
  pose_attention_config_init(&c);
  memcpy(&c, cfg, cfg->struct_size < sizeof c ? cfg->struct_size : sizeof c);
  c.struct_size = sizeof c;
  if (pose_attention_mode_string(c.mode) == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config mode %d is not a pose_attention_mode",
                     fn, (int)c.mode);
  }
  if (c.layout != POSE_LAYOUT_QKV_PROJ && c.layout != POSE_LAYOUT_QUERY_KEY_VALUE) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config layout %d is not a pose_attention_layout", fn, (int)c.layout);
  }
  if (c.dim == 0) return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config dim is 0", fn);
  if (c.num_heads == 0 || c.dim % c.num_heads != 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config num_heads is %zu, need a divisor of dim %zu", fn, c.num_heads,
                     c.dim);
  }
  size_t w;
  if (!pose_mul3(c.dim, c.dim, 3 * sizeof(float), &w) || c.dim > (size_t)1 << 30) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: config dim %zu is too large", fn, c.dim);
  }
  if (c.mode == POSE_MODE_STRIDED && c.skip_factor == 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config skip_factor is 0, need >= 1 for strided attention", fn);
  }
  if (c.mode == POSE_MODE_ADAPTIVE && c.max_seq_len < 10) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config max_seq_len is %zu, adaptive attention needs >= 10 (the skip "
                     "factor divides by max_seq_len / 10)",
                     fn, c.max_seq_len);
  }
  if (!isfinite(c.scale) || c.scale < 0.0f) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config scale is %g, need 0 (default) or a finite positive value", fn,
                     (double)c.scale);
  }
  if (c.mode == POSE_MODE_FULL) c.skip_factor = 1;
  if (norm != NULL) *norm = c;
  return POSE_OK;
}

size_t pose_attention_slots(pose_attention_module *a, pose_slot *slots) {
  size_t d = a->cfg.dim, n = 0;
  if (a->cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    slots[n++] = (pose_slot){"qkv.weight", &a->qkv_w, 3 * d * d};
    if (a->cfg.qkv_bias) slots[n++] = (pose_slot){"qkv.bias", &a->qkv_b, 3 * d};
    slots[n++] = (pose_slot){"proj.weight", &a->proj_w, d * d};
    slots[n++] = (pose_slot){"proj.bias", &a->proj_b, d};
  } else {
    slots[n++] = (pose_slot){"query.weight", &a->q_w, d * d};
    slots[n++] = (pose_slot){"query.bias", &a->q_b, d};
    slots[n++] = (pose_slot){"key.weight", &a->k_w, d * d};
    slots[n++] = (pose_slot){"key.bias", &a->k_b, d};
    slots[n++] = (pose_slot){"value.weight", &a->v_w, d * d};
    slots[n++] = (pose_slot){"value.bias", &a->v_b, d};
  }
  return n;
}

void pose_attention_release(pose_attention_module *a) {
  pose_slot slots[6];
  size_t n = pose_attention_slots(a, slots);
  for (size_t i = 0; i < n; i++) {
    pose_free(*slots[i].data);
    *slots[i].data = NULL;
  }
}

pose_status pose_attention_alloc(pose_attention_module *a) {
  pose_slot slots[6];
  size_t n = pose_attention_slots(a, slots);
  for (size_t i = 0; i < n; i++) {
    *slots[i].data = pose_alloc_floats(slots[i].count);
    if (*slots[i].data == NULL) {
      pose_attention_release(a);
      return POSE_ERR_OUT_OF_MEMORY;
    }
  }
  return POSE_OK;
}

void pose_attention_init_random(pose_attention_module *a, pose_rng *rng) {
  size_t d = a->cfg.dim;
  if (a->cfg.layout == POSE_LAYOUT_QKV_PROJ) {
    pose_rng_linear(rng, 3 * d, d, a->qkv_w, a->qkv_b);
    pose_rng_linear(rng, d, d, a->proj_w, a->proj_b);
  } else {
    pose_rng_linear(rng, d, d, a->q_w, a->q_b);
    pose_rng_linear(rng, d, d, a->k_w, a->k_b);
    pose_rng_linear(rng, d, d, a->v_w, a->v_b);
  }
}

/* Allocates the struct and its weights for a checked config. */
static pose_status attention_new(const pose_attention_config *c, pose_attention_module **out) {
  pose_attention_module *a = pose_calloc(1, sizeof *a);
  if (a == NULL) return POSE_ERR_OUT_OF_MEMORY;
  a->cfg = *c;
  a->head_dim = c->dim / c->num_heads;
  a->scale = c->scale != 0.0f ? c->scale : (float)(1.0 / sqrt((double)a->head_dim));
  if (pose_attention_alloc(a) != POSE_OK) {
    pose_free(a);
    return POSE_ERR_OUT_OF_MEMORY;
  }
  *out = a;
  return POSE_OK;
}

pose_status pose_attention_create(const pose_attention_config *cfg, pose_attention_module **out) {
  static const char fn[] = "pose_attention_create";
  POSE_CHECK_PTR(fn, out);
  *out = NULL;
  pose_attention_config c;
  pose_status st = pose_attention_config_check(fn, cfg, &c);
  if (st != POSE_OK) return st;
  pose_attention_module *a;
  st = attention_new(&c, &a);
  if (st != POSE_OK) return st;
  pose_rng rng;
  pose_rng_seed(&rng, c.seed);
  pose_attention_init_random(a, &rng);
  *out = a;
  return POSE_OK;
}

pose_status pose_attention_create_from_weights(const pose_attention_config *cfg,
                                               const pose_weight *weights, size_t num_weights,
                                               pose_attention_module **out) {
  static const char fn[] = "pose_attention_create_from_weights";
  POSE_CHECK_PTR(fn, out);
  *out = NULL;
  if (weights == NULL && num_weights != 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: weights is NULL", fn);
  }
  pose_attention_config c;
  pose_status st = pose_attention_config_check(fn, cfg, &c);
  if (st != POSE_OK) return st;
  pose_attention_module *a;
  st = attention_new(&c, &a);
  if (st != POSE_OK) return st;
  pose_slot slots[6];
  size_t n = pose_attention_slots(a, slots);
  bool seen[6] = {false};
  for (size_t i = 0; i < num_weights && st == POSE_OK; i++) {
    const pose_weight *w = &weights[i];
    size_t s = 0;
    while (s < n && (w->name == NULL || strcmp(w->name, slots[s].name) != 0)) s++;
    if (w->name == NULL) {
      st = pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: weights[%zu].name is NULL", fn, i);
    } else if (s == n) {
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: unexpected tensor \"%s\" for a %s-layout module", fn,
                     w->name, c.layout == POSE_LAYOUT_QKV_PROJ ? "qkv/proj" : "query/key/value");
    } else if (seen[s]) {
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" given twice", fn, w->name);
    } else if (w->data == NULL) {
      st = pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" data is NULL", fn, w->name);
    } else if (w->count != slots[s].count) {
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" has %zu elements, expected %zu", fn,
                     w->name, w->count, slots[s].count);
    } else {
      memcpy(*slots[s].data, w->data, w->count * sizeof(float));
      seen[s] = true;
    }
  }
  for (size_t s = 0; s < n && st == POSE_OK; s++) {
    if (!seen[s]) st = pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" is missing", fn, slots[s].name);
  }
  if (st != POSE_OK) {
    pose_attention_free(a);
    return st;
  }
  *out = a;
  return POSE_OK;
}

void pose_attention_free(pose_attention_module *attn) {
  if (attn == NULL) return;
  pose_attention_release(attn);
  pose_free(attn);
}

pose_status pose_attention_get_config(const pose_attention_module *attn, pose_attention_config *cfg) {
  static const char fn[] = "pose_attention_get_config";
  POSE_CHECK_PTR(fn, attn);
  POSE_CHECK_PTR(fn, cfg);
  if (cfg->struct_size < ATTN_CONFIG_V1_SIZE) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: cfg->struct_size is %zu, need >= %zu (call pose_attention_config_init "
                     "first)",
                     fn, cfg->struct_size, (size_t)ATTN_CONFIG_V1_SIZE);
  }
  size_t n = cfg->struct_size < sizeof attn->cfg ? cfg->struct_size : sizeof attn->cfg;
  size_t keep = cfg->struct_size;
  memcpy(cfg, &attn->cfg, n);
  cfg->struct_size = keep < sizeof attn->cfg ? keep : sizeof attn->cfg;
  return POSE_OK;
}

pose_status pose_attention_get_weight(const pose_attention_module *attn, const char *name,
                                      const float **data, size_t *count) {
  static const char fn[] = "pose_attention_get_weight";
  POSE_CHECK_PTR(fn, attn);
  POSE_CHECK_PTR(fn, name);
  POSE_CHECK_PTR(fn, data);
  POSE_CHECK_PTR(fn, count);
  pose_slot slots[6];
  size_t n = pose_attention_slots((pose_attention_module *)attn, slots);
  for (size_t s = 0; s < n; s++) {
    if (strcmp(name, slots[s].name) == 0) {
      *data = *slots[s].data;
      *count = slots[s].count;
      return POSE_OK;
    }
  }
  return pose_fail(POSE_ERR_WEIGHTS, "%s: the module has no tensor \"%s\"", fn, name);
}

/* Skip factor for a sequence of len positions. */
static size_t skip_for(const pose_attention_config *c, size_t len) {
  switch (c->mode) {
    case POSE_MODE_FULL: return 1;
    case POSE_MODE_STRIDED: return c->skip_factor;
    case POSE_MODE_ADAPTIVE: return pose_adaptive_skip(len, c->max_seq_len);
  }
  return 1;
}

pose_status pose_attention_skip_for(const pose_attention_module *attn, size_t seq_len,
                                    size_t *skip_factor) {
  static const char fn[] = "pose_attention_skip_for";
  POSE_CHECK_PTR(fn, attn);
  POSE_CHECK_PTR(fn, skip_factor);
  POSE_CHECK_NONZERO(fn, seq_len);
  *skip_factor = skip_for(&attn->cfg, seq_len);
  return POSE_OK;
}

/* Largest number of kept keys over sequence lengths 1..seq_len. */
static size_t max_keys(const pose_attention_config *c, size_t seq_len) {
  if (c->mode != POSE_MODE_ADAPTIVE) return pose_ceil_div(seq_len, skip_for(c, seq_len));
  /* k(L) = max(1, L / q), q = max_seq_len / 10: below 2q keys are at most L, above it
   * ceil(L / floor(L / q)) < 2q. */
  size_t q2 = 2 * (c->max_seq_len / 10);
  return seq_len < q2 ? seq_len : q2;
}

/* Scratch layout per forward: Q [L, D], K [nk, D], V [nk, D], context [L, D] (qkv/proj layout
 * only), core scores. */
pose_status pose_attention_scratch(const pose_attention_module *a, size_t seq_len, size_t *floats) {
  size_t d = a->cfg.dim, nk = max_keys(&a->cfg, seq_len);
  size_t ld = skip_for(&a->cfg, seq_len);
  size_t qrows, krows, core, total;
  bool ok = pose_mul(seq_len, d, &qrows) && pose_mul(nk, d, &krows);
  core = pose_attention_core_scratch(seq_len, nk);
  ok = ok && core != 0 && pose_add(qrows, 2 * krows, &total) &&
       (a->cfg.layout == POSE_LAYOUT_QUERY_KEY_VALUE || pose_add(total, qrows, &total)) &&
       pose_add(total, core, &total) && krows <= SIZE_MAX / 2;
  ok = ok && pose_mul(ld, d, &ld) && pose_blas_dims_ok(seq_len, nk, d, ld, d, nk);
  if (!ok) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "pose_attention_forward: seq_len %zu with dim %zu is too large", seq_len, d);
  }
  *floats = total;
  return POSE_OK;
}

void pose_attention_run(const pose_attention_module *a, const float *x, size_t batch, size_t seq_len,
                        const size_t *lengths, float *out, float *scratch) {
  const pose_attention_config *c = &a->cfg;
  const size_t d = c->dim, hd = a->head_dim, nk_max = max_keys(c, seq_len);
  const bool fused = c->layout == POSE_LAYOUT_QKV_PROJ;
  float *q = scratch, *k = q + seq_len * d, *v = k + nk_max * d;
  float *ctx = fused ? v + nk_max * d : NULL;
  float *core = (fused ? ctx : v + nk_max * d) + (fused ? seq_len * d : 0);
  const float *wq = fused ? a->qkv_w : a->q_w, *wk = fused ? a->qkv_w + d * d : a->k_w;
  const float *wv = fused ? a->qkv_w + 2 * d * d : a->v_w;
  const float *bq = fused ? a->qkv_b : a->q_b;
  const float *bk = fused ? (a->qkv_b ? a->qkv_b + d : NULL) : a->k_b;
  const float *bv = fused ? (a->qkv_b ? a->qkv_b + 2 * d : NULL) : a->v_b;

  for (size_t b = 0; b < batch; b++) {
    const size_t len = pose_len_of(lengths, b, seq_len);
    const size_t skip = skip_for(c, len), nk = pose_ceil_div(len, skip);
    const float *xb = x + b * seq_len * d;
    float *ob = out + b * seq_len * d;
    /* Queries for every position; keys and values only at 0, k, 2k, ...: the input rows are
     * read through a leading dimension of skip * dim, never gathered. */
    pose_linear_rows(xb, d, len, d, wq, bq, d, q, d);
    pose_linear_rows(xb, skip * d, nk, d, wk, bk, d, k, d);
    pose_linear_rows(xb, skip * d, nk, d, wv, bv, d, v, d);
    float *dst = fused ? ctx : ob;
    for (size_t h = 0; h < c->num_heads; h++) {
      pose_attention_core(q + h * hd, d, len, k + h * hd, d, v + h * hd, d, nk, hd, a->scale,
                          dst + h * hd, d, core);
    }
    if (fused) pose_linear_rows(ctx, d, len, d, a->proj_w, a->proj_b, d, ob, d);
    if (len < seq_len) memset(ob + len * d, 0, (seq_len - len) * d * sizeof(float));
  }
}

pose_status pose_check_lengths(const char *fn, const size_t *lengths, size_t batch,
                               size_t seq_len) {
  if (lengths == NULL) return POSE_OK;
  for (size_t b = 0; b < batch; b++) {
    if (lengths[b] == 0 || lengths[b] > seq_len) {
      return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: lengths[%zu] is %zu, need 1..%zu", fn, b,
                       lengths[b], seq_len);
    }
  }
  return POSE_OK;
}

pose_status pose_attention_forward(const pose_attention_module *attn, const float *x, size_t batch,
                                   size_t seq_len, const size_t *lengths, float *out,
                                   size_t out_count) {
  static const char fn[] = "pose_attention_forward";
  POSE_CHECK_PTR(fn, attn);
  POSE_CHECK_PTR(fn, x);
  POSE_CHECK_PTR(fn, out);
  POSE_CHECK_NONZERO(fn, batch);
  POSE_CHECK_NONZERO(fn, seq_len);
  size_t need, floats;
  pose_status st = pose_count3(fn, batch, seq_len, attn->cfg.dim, &need);
  if (st == POSE_OK) st = pose_check_count(fn, "out_count", out_count, need);
  if (st == POSE_OK) st = pose_check_lengths(fn, lengths, batch, seq_len);
  if (st == POSE_OK) st = pose_attention_scratch(attn, seq_len, &floats);
  if (st != POSE_OK) return st;
  float *scratch = pose_alloc_floats(floats);
  if (scratch == NULL) return POSE_ERR_OUT_OF_MEMORY;
  pose_attention_run(attn, x, batch, seq_len, lengths, out, scratch);
  pose_free(scratch);
  return POSE_OK;
}
