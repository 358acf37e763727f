/* The attention module: slide 1 (fused qkv + proj, multi-head) and slides 3-4 (separate
 * query/key/value) weight layouts, each with full, strided, adaptive or local+strided attention, optionally causal. */
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
    case POSE_MODE_LOCAL_STRIDED: return "local_strided";
    case POSE_MODE_HIERARCHICAL: return "hierarchical";
    case POSE_MODE_IMPORTANCE: return "importance";
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
  if (c.mode != POSE_MODE_FULL && c.mode != POSE_MODE_ADAPTIVE && c.skip_factor == 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config skip_factor is 0, need >= 1 for %s attention", fn,
                     pose_attention_mode_string(c.mode));
  }
  if (c.mode == POSE_MODE_LOCAL_STRIDED && c.window == 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config window is 0, need >= 1 for local_strided attention", fn);
  }
  if (c.mode != POSE_MODE_LOCAL_STRIDED && c.num_global != 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config num_global is %zu, need 0 for %s attention (global positions "
                     "are local_strided only)",
                     fn, c.num_global, pose_attention_mode_string(c.mode));
  }
  if (c.mode == POSE_MODE_HIERARCHICAL && (c.levels == 0 || c.levels > 64)) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config levels is %zu, need 1..64 for hierarchical attention", fn,
                     c.levels);
  }
  if (c.causal != 0 && c.causal != 1) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config causal is %d, need 0 or 1", fn,
                     c.causal);
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
    if (!seen[s])
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" is missing", fn, slots[s].name);
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

pose_status pose_attention_get_config(const pose_attention_module *attn,
                                      pose_attention_config *cfg) {
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
    case POSE_MODE_STRIDED:
    case POSE_MODE_LOCAL_STRIDED:
    case POSE_MODE_HIERARCHICAL:
    case POSE_MODE_IMPORTANCE: return c->skip_factor;
    case POSE_MODE_ADAPTIVE: return pose_adaptive_skip(len, c->max_seq_len);
  }
  return 1;
}

/* Local and importance attention project keys and values at every position, stored as rows
 * [len, dim]. */
static bool is_local(const pose_attention_config *c) {
  return c->mode == POSE_MODE_LOCAL_STRIDED || c->mode == POSE_MODE_IMPORTANCE;
}

/* Hierarchical attention keeps the level-0 positions as rows [keys, dim] (not transposed), so
 * that the coarser levels can read every 2^l-th row in place. */
static bool is_hier(const pose_attention_config *c) { return c->mode == POSE_MODE_HIERARCHICAL; }

/* Keys an importance block selects in a sequence of len positions. */
static size_t top_m_for(const pose_attention_config *c, size_t len) {
  size_t m = c->top_m ? c->top_m : pose_ceil_div(len, c->skip_factor);
  return m < len ? m : len;
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
  if (is_local(c)) return seq_len;
  if (c->mode != POSE_MODE_ADAPTIVE) return pose_ceil_div(seq_len, skip_for(c, seq_len));
  /* k(L) = max(1, L / q), q = max_seq_len / 10: below 2q keys are at most L, above it
   * ceil(L / floor(L / q)) < 2q. */
  size_t q2 = 2 * (c->max_seq_len / 10);
  return seq_len < q2 ? seq_len : q2;
}

pose_status pose_attention_plan_for(const pose_attention_module *a, size_t batch, size_t seq_len,
                                    pose_attn_plan *plan) {
  const size_t d = a->cfg.dim, nk = max_keys(&a->cfg, seq_len);
  /* The leading dimension strided keys are read with (local: only when two keys exist). */
  size_t ld = skip_for(&a->cfg, seq_len);
  if (is_local(&a->cfg) && ld >= seq_len) ld = 1;
  if (is_hier(&a->cfg)) ld = nk; /* level l reads every 2^l-th of nk rows */
  size_t work = pose_attention_work_floats(a->head_dim, nk);
  if (a->cfg.mode == POSE_MODE_IMPORTANCE) {
    size_t extra = pose_importance_work_floats(a->head_dim, nk, top_m_for(&a->cfg, seq_len));
    if (extra == 0 || !pose_add(work, extra, &work)) work = 0;
  }
  size_t workers = (size_t)pose_threads(), qrows, krows, slots, total;
  bool ok = pose_mul(seq_len, d, &qrows) && pose_mul(nk, d, &krows) && work != 0;
  ok = ok && pose_mul(ld, d, &ld) && pose_blas_dims_ok(seq_len, nk, d, ld, d, nk);
  if (!ok) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "pose_attention_forward: seq_len %zu with dim %zu is too large", seq_len, d);
  }
  /* Queries [B, N, D], keys and values transposed [B, D, nk], then a scratch slot per worker. */
  if (!pose_mul(batch, qrows, &qrows) || !pose_mul(batch, krows, &krows) ||
      !pose_mul(workers, work, &slots) || !pose_add(qrows, krows, &total) ||
      !pose_add(total, krows, &total) || !pose_add(total, slots, &total) ||
      !pose_mul(total, sizeof(float), &(size_t){0})) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW,
                     "pose_attention_forward: batch %zu x seq_len %zu with dim %zu is too large",
                     batch, seq_len, d);
  }
  *plan = (pose_attn_plan){batch, seq_len, nk, workers, work, total};
  return POSE_OK;
}

/* What the three phases of a forward share. */
typedef struct attn_fwd {
  const pose_attention_module *a;
  const pose_attn_plan *p;
  const float *x;
  const size_t *lengths;
  float *q, *k, *v, *out;
} attn_fwd;

/* Job 3b + {0, 1, 2}: sequence b's queries for every position; keys and values only at
 * 0, k, 2k, ..., read from the input through a leading dimension of k * dim, never gathered. */
static void describe_qkv(const void *ctx, size_t job, pose_linear_job *j) {
  const attn_fwd *f = ctx;
  const pose_attention_module *a = f->a;
  const size_t d = a->cfg.dim, b = job / 3, which = job % 3, n = f->p->seq_len;
  const size_t len = pose_len_of(f->lengths, b, n), skip = skip_for(&a->cfg, len);
  const bool fused = a->cfg.layout == POSE_LAYOUT_QKV_PROJ;
  const float *xb = f->x + b * n * d;
  if (which == 0) {
    *j = (pose_linear_job){.x = xb,
                           .ldx = d,
                           .rows = len,
                           .in = d,
                           .w = fused ? a->qkv_w : a->q_w,
                           .bias = fused ? a->qkv_b : a->q_b,
                           .out = d,
                           .y = f->q + b * n * d,
                           .ldy = d};
    return;
  }
  const float *w = fused ? a->qkv_w + which * d * d : which == 1 ? a->k_w : a->v_w;
  const float *bias = fused        ? (a->qkv_b ? a->qkv_b + which * d : NULL)
                      : which == 1 ? a->k_b
                                   : a->v_b;
  float *y = (which == 1 ? f->k : f->v) + b * f->p->max_keys * d;
  if (is_local(&a->cfg)) {
    /* Every position, as rows [max_keys, D]: the kernel reads the window contiguously and the
     * strided keys in place through a leading dimension of skip * D. */
    *j = (pose_linear_job){
        .x = xb, .ldx = d, .rows = len, .in = d, .w = w, .bias = bias, .out = d, .y = y, .ldy = d};
    return;
  }
  if (is_hier(&a->cfg)) {
    /* The level-0 positions as rows [max_keys, D] (one key: the stride is never used). */
    const size_t nk = pose_ceil_div(len, skip);
    *j = (pose_linear_job){.x = xb,
                           .ldx = nk > 1 ? skip * d : d,
                           .rows = nk,
                           .in = d,
                           .w = w,
                           .bias = bias,
                           .out = d,
                           .y = y,
                           .ldy = d};
    return;
  }
  /* Stored transposed, [D, max_keys] per sequence: each head's keys are contiguous rows. */
  *j = (pose_linear_job){.x = xb,
                         .ldx = skip * d,
                         .rows = pose_ceil_div(len, skip),
                         .in = d,
                         .w = w,
                         .bias = bias,
                         .out = d,
                         .y = y,
                         .ldy = f->p->max_keys,
                         .transposed = true};
}

/* Head h of sequence b. The fused layout writes the context over the queries (each query
 * block is read before it is written, and by no other task), the other layout writes out. */
static void describe_head(const void *ctx, size_t b, size_t h, pose_attn_head *hd) {
  const attn_fwd *f = ctx;
  const pose_attention_module *a = f->a;
  const size_t d = a->cfg.dim, n = f->p->seq_len, off = h * a->head_dim;
  const size_t len = pose_len_of(f->lengths, b, n), skip = skip_for(&a->cfg, len);
  float *dst = a->cfg.layout == POSE_LAYOUT_QKV_PROJ ? f->q : f->out;
  const size_t nk = f->p->max_keys;
  if (is_local(&a->cfg)) {
    const size_t kb = b * nk * d + off;
    *hd = (pose_attn_head){
        .q = f->q + b * n * d + off,
        .ldq = d,
        .nq = len,
        .k = f->k + kb,
        .ldk = d,
        .v = f->v + kb,
        .ldv = d,
        .nkeys = len,
        .head_dim = a->head_dim,
        .scale = a->scale,
        .out = dst + b * n * d + off,
        .ldo = d,
        .causal = a->cfg.causal != 0,
        .skip = skip,
        .window = a->cfg.mode == POSE_MODE_LOCAL_STRIDED ? a->cfg.window : 0,
        .num_global = a->cfg.mode == POSE_MODE_LOCAL_STRIDED ? a->cfg.num_global : 0,
        .top_m = a->cfg.mode == POSE_MODE_IMPORTANCE ? top_m_for(&a->cfg, len) : 0};
    return;
  }
  if (is_hier(&a->cfg)) {
    const size_t kb = b * nk * d + off;
    *hd = (pose_attn_head){.q = f->q + b * n * d + off,
                           .ldq = d,
                           .nq = len,
                           .k = f->k + kb,
                           .ldk = d,
                           .v = f->v + kb,
                           .ldv = d,
                           .nkeys = pose_ceil_div(len, skip),
                           .head_dim = a->head_dim,
                           .scale = a->scale,
                           .out = dst + b * n * d + off,
                           .ldo = d,
                           .causal = a->cfg.causal != 0,
                           .skip = skip,
                           .levels = a->cfg.levels};
    return;
  }
  const size_t kb = b * nk * d + off * nk;
  *hd = (pose_attn_head){.q = f->q + b * n * d + off,
                         .ldq = d,
                         .nq = len,
                         .k = f->k + kb,
                         .ldk = nk,
                         .v = f->v + kb,
                         .ldv = nk,
                         .nkeys = pose_ceil_div(len, skip),
                         .head_dim = a->head_dim,
                         .scale = a->scale,
                         .out = dst + b * n * d + off,
                         .ldo = d,
                         .kv_transposed = true,
                         .causal = a->cfg.causal != 0,
                         .skip = skip};
}

/* Output projection of sequence b's context. */
static void describe_proj(const void *ctx, size_t b, pose_linear_job *j) {
  const attn_fwd *f = ctx;
  const size_t d = f->a->cfg.dim, n = f->p->seq_len;
  *j = (pose_linear_job){.x = f->q + b * n * d,
                         .ldx = d,
                         .rows = pose_len_of(f->lengths, b, n),
                         .in = d,
                         .w = f->a->proj_w,
                         .bias = f->a->proj_b,
                         .out = d,
                         .y = f->out + b * n * d,
                         .ldy = d};
}

void pose_attention_run(const pose_attention_module *a, const pose_attn_plan *p, const float *x,
                        const size_t *lengths, float *out, float *scratch) {
  const size_t d = a->cfg.dim, n = p->seq_len, kv = p->batch * p->max_keys * d;
  attn_fwd f = {a, p, x, lengths, scratch, NULL, NULL, out};
  f.k = f.q + p->batch * n * d;
  f.v = f.k + kv;
  float *work = f.v + kv;
  /* Three regions, each finished before the next starts: x is read only by the first, so out
   * may be x. */
  pose_linear_many(3 * p->batch, n, d, describe_qkv, &f);
  pose_attention_heads(p->batch, a->cfg.num_heads, n, describe_head, &f, work, p->work_floats);
  if (a->cfg.layout == POSE_LAYOUT_QKV_PROJ) pose_linear_many(p->batch, n, d, describe_proj, &f);
  for (size_t b = 0; b < p->batch; b++) {
    size_t len = pose_len_of(lengths, b, n);
    if (len < n) memset(out + (b * n + len) * d, 0, (n - len) * d * sizeof(float));
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
  size_t need;
  pose_attn_plan plan;
  pose_status st = pose_count3(fn, batch, seq_len, attn->cfg.dim, &need);
  if (st == POSE_OK) st = pose_check_count(fn, "out_count", out_count, need);
  if (st == POSE_OK) st = pose_check_lengths(fn, lengths, batch, seq_len);
  if (st == POSE_OK) st = pose_attention_plan_for(attn, batch, seq_len, &plan);
  if (st != POSE_OK) return st;
  float *scratch = pose_alloc_floats(plan.floats);
  if (scratch == NULL) return POSE_ERR_OUT_OF_MEMORY;
  pose_attention_run(attn, &plan, x, lengths, out, scratch);
  pose_free(scratch);
  return POSE_OK;
}
