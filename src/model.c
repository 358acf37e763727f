/* pose_model: POSE layer, encoder, summarizer and classifier handles -- configuration,
 * allocation, the state_dict table and weight access. The forward passes live in
 * model_forward.c, files in io/model_io.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pose_internal.h"

#define MODEL_CONFIG_V1_SIZE (offsetof(pose_model_config, seed) + sizeof(uint64_t))
#define LAYER_INFO_V1_SIZE (offsetof(pose_layer_info, ff_dim) + sizeof(size_t))

const char *pose_model_kind_string(pose_model_kind kind) {
  switch (kind) {
    case POSE_MODEL_LAYER: return "layer";
    case POSE_MODEL_ENCODER: return "encoder";
    case POSE_MODEL_SUMMARIZER: return "summarizer";
    case POSE_MODEL_CLASSIFIER: return "classifier";
  }
  return NULL;
}

pose_status pose_model_config_init(pose_model_config *cfg, pose_model_kind kind) {
  static const char fn[] = "pose_model_config_init";
  POSE_CHECK_PTR(fn, cfg);
  if (pose_model_kind_string(kind) == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: kind %d is not a pose_model_kind", fn,
                     (int)kind);
  }
  memset(cfg, 0, sizeof *cfg);
  cfg->struct_size = sizeof *cfg;
  cfg->kind = kind;
  cfg->num_heads = 1;
  cfg->mode = POSE_MODE_STRIDED;
  cfg->skip_factor = 2;
  cfg->max_seq_len = 1000;
  cfg->layer_norm_eps = 1e-5f;
  switch (kind) {
    case POSE_MODEL_LAYER: /* slide 6 */
      cfg->dim = 64, cfg->ff_dim = 256, cfg->num_layers = 1;
      break;
    case POSE_MODEL_ENCODER: /* slide 9 */
      cfg->dim = 256, cfg->ff_dim = 1024, cfg->num_layers = 6;
      break;
    case POSE_MODEL_SUMMARIZER: /* slide 10; ff_dim 0: the seed's embed_dim * 4 */
      cfg->vocab_size = 30000, cfg->dim = 256, cfg->ff_dim = 0, cfg->num_layers = 6;
      break;
    case POSE_MODEL_CLASSIFIER: /* slide 11; ff_dim 0: the seed's hidden_dim * 4 */
      cfg->input_dim = 128, cfg->dim = 256, cfg->ff_dim = 0, cfg->num_layers = 4;
      cfg->num_classes = 10;
      break;
  }
  return POSE_OK;
}

static pose_status bad_field(const char *fn, const char *field, size_t value, const char *need) {
  return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config %s is %zu, need %s", fn, field, value,
                   need);
}

pose_status pose_model_config_check(const char *fn, const pose_model_config *cfg,
                                    pose_model_config *norm) {
  POSE_CHECK_PTR(fn, cfg);
  if (cfg->struct_size < MODEL_CONFIG_V1_SIZE) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config struct_size is %zu, need >= %zu (call pose_model_config_init "
                     "first)",
                     fn, cfg->struct_size, (size_t)MODEL_CONFIG_V1_SIZE);
  }
  pose_model_config c;
  memset(&c, 0, sizeof c);
  memcpy(&c, cfg, cfg->struct_size < sizeof c ? cfg->struct_size : sizeof c);
  c.struct_size = sizeof c;
  if (pose_model_kind_string(c.kind) == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config kind %d is not a pose_model_kind", fn,
                     (int)c.kind);
  }
  const size_t big = (size_t)1 << 24; /* no width of a real model comes near; keeps sizes sane */
  if (c.dim == 0 || c.dim > big) return bad_field(fn, "dim", c.dim, "1..16777216");
  if (c.ff_dim == 0) c.ff_dim = 4 * c.dim; /* the seed's models: Linear(dim, dim * 4) */
  if (c.ff_dim > big) return bad_field(fn, "ff_dim", c.ff_dim, "0 (4 * dim) or 1..16777216");
  if (c.kind == POSE_MODEL_LAYER && c.num_layers != 1) {
    return bad_field(fn, "num_layers", c.num_layers, "1 for a layer");
  }
  if (c.num_layers == 0 || c.num_layers > 4096) {
    return bad_field(fn, "num_layers", c.num_layers, "1..4096");
  }
  if (c.num_heads == 0 || c.dim % c.num_heads != 0) {
    return bad_field(fn, "num_heads", c.num_heads, "a divisor of dim");
  }
  if (pose_attention_mode_string(c.mode) == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config mode %d is not a pose_attention_mode",
                     fn, (int)c.mode);
  }
  if (c.mode != POSE_MODE_FULL && c.mode != POSE_MODE_ADAPTIVE && c.skip_factor == 0) {
    return bad_field(fn, "skip_factor", c.skip_factor, ">= 1 for strided attention");
  }
  if (c.mode == POSE_MODE_LOCAL_STRIDED && c.window == 0) {
    return bad_field(fn, "window", c.window, ">= 1 for local_strided attention");
  }
  if (c.mode != POSE_MODE_LOCAL_STRIDED && c.num_global != 0) {
    return bad_field(fn, "num_global", c.num_global, "0 unless the mode is local_strided");
  }
  if (c.mode == POSE_MODE_HIERARCHICAL && (c.levels == 0 || c.levels > 64)) {
    return bad_field(fn, "levels", c.levels, "1..64 for hierarchical attention");
  }
  if (c.causal != 0 && c.causal != 1) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config causal is %d, need 0 or 1", fn,
                     c.causal);
  }
  if (c.mode == POSE_MODE_ADAPTIVE && c.max_seq_len < 10) {
    return bad_field(fn, "max_seq_len", c.max_seq_len,
                     ">= 10 for adaptive attention (the skip divides by max_seq_len / 10)");
  }
  if (c.mode == POSE_MODE_FULL) c.skip_factor = 1;
  if (c.kind == POSE_MODEL_SUMMARIZER && (c.vocab_size == 0 || c.vocab_size > big)) {
    return bad_field(fn, "vocab_size", c.vocab_size, "1..16777216");
  }
  if (c.kind == POSE_MODEL_CLASSIFIER) {
    if (c.input_dim == 0 || c.input_dim > big) {
      return bad_field(fn, "input_dim", c.input_dim, "1..16777216");
    }
    if (c.num_classes == 0 || c.num_classes > big) {
      return bad_field(fn, "num_classes", c.num_classes, "1..16777216");
    }
  }
  if (c.kind != POSE_MODEL_SUMMARIZER) c.vocab_size = 0;
  if (c.kind != POSE_MODEL_CLASSIFIER) c.input_dim = 0, c.num_classes = 0;
  if (c.positional_encoding != 0 && c.positional_encoding != 1) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: config positional_encoding is %d, need 0 or 1",
                     fn, c.positional_encoding);
  }
  if (c.positional_encoding && (c.kind == POSE_MODEL_LAYER || c.kind == POSE_MODEL_ENCODER)) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config positional_encoding applies to the summarizer and classifier "
                     "only (add it to the input with pose_positional_encoding_add)",
                     fn);
  }
  if (c.positional_encoding && c.dim % 2 != 0) {
    return bad_field(fn, "dim", c.dim, "an even width for positional encoding");
  }
  if (!isfinite(c.layer_norm_eps) || c.layer_norm_eps < 0.0f) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: config layer_norm_eps is %g, need a finite value >= 0", fn,
                     (double)c.layer_norm_eps);
  }
  /* Every tensor's element count must fit comfortably; 2^24 x 2^24 floats does in 64 bits. */
  if (norm != NULL) *norm = c;
  return POSE_OK;
}

/* ---- the state_dict table ------------------------------------------------------------------ */

typedef struct slot_builder {
  pose_model *m;
  size_t n;
  bool failed;
} slot_builder;

static void add_slot(slot_builder *sb, const char *prefix, const char *name, float **data,
                     size_t rows, size_t cols) {
  if (sb->failed) return;
  pose_model_slot *s = &sb->m->slots[sb->n];
  size_t len = strlen(prefix) + strlen(name) + 1;
  s->name = pose_malloc(len);
  if (s->name == NULL) {
    sb->failed = true;
    return;
  }
  snprintf(s->name, len, "%s%s", prefix, name);
  s->data = data;
  s->ndim = cols == 0 ? 1 : 2;
  s->shape[0] = rows;
  s->shape[1] = cols;
  s->count = cols == 0 ? rows : rows * cols;
  sb->n++;
}

static void add_layer_slots(slot_builder *sb, pose_layer_weights *L, const char *prefix, size_t d,
                            size_t ff) {
  pose_attention_module *a = &L->attn;
  add_slot(sb, prefix, "attn.query.weight", &a->q_w, d, d);
  add_slot(sb, prefix, "attn.query.bias", &a->q_b, d, 0);
  add_slot(sb, prefix, "attn.key.weight", &a->k_w, d, d);
  add_slot(sb, prefix, "attn.key.bias", &a->k_b, d, 0);
  add_slot(sb, prefix, "attn.value.weight", &a->v_w, d, d);
  add_slot(sb, prefix, "attn.value.bias", &a->v_b, d, 0);
  add_slot(sb, prefix, "ff.0.weight", &L->ff0_w, ff, d);
  add_slot(sb, prefix, "ff.0.bias", &L->ff0_b, ff, 0);
  add_slot(sb, prefix, "ff.2.weight", &L->ff2_w, d, ff);
  add_slot(sb, prefix, "ff.2.bias", &L->ff2_b, d, 0);
  add_slot(sb, prefix, "norm1.weight", &L->norm1_w, d, 0);
  add_slot(sb, prefix, "norm1.bias", &L->norm1_b, d, 0);
  add_slot(sb, prefix, "norm2.weight", &L->norm2_w, d, 0);
  add_slot(sb, prefix, "norm2.bias", &L->norm2_b, d, 0);
}

#define LAYER_SLOTS 14

/* Fills m->slots in the PyTorch module's state_dict order. */
static pose_status build_slots(pose_model *m) {
  const pose_model_config *c = &m->cfg;
  size_t n = c->num_layers * LAYER_SLOTS + 4;
  m->slots = pose_calloc(n, sizeof *m->slots);
  if (m->slots == NULL) return POSE_ERR_OUT_OF_MEMORY;
  slot_builder sb = {m, 0, false};
  const char *enc = c->kind == POSE_MODEL_SUMMARIZER || c->kind == POSE_MODEL_CLASSIFIER
                        ? "pose_encoder.layers."
                        : "layers.";
  if (c->kind == POSE_MODEL_SUMMARIZER) {
    add_slot(&sb, "", "embedding.weight", &m->embedding, c->vocab_size, c->dim);
  }
  if (c->kind == POSE_MODEL_CLASSIFIER) {
    add_slot(&sb, "", "feature_extractor.weight", &m->in_w, c->dim, c->input_dim);
    add_slot(&sb, "", "feature_extractor.bias", &m->in_b, c->dim, 0);
  }
  for (size_t i = 0; i < c->num_layers; i++) {
    char prefix[64];
    if (c->kind == POSE_MODEL_LAYER) {
      prefix[0] = '\0';
    } else {
      snprintf(prefix, sizeof prefix, "%s%zu.", enc, i);
    }
    add_layer_slots(&sb, &m->layers[i], prefix, c->dim, c->ff_dim);
  }
  if (c->kind == POSE_MODEL_SUMMARIZER) {
    add_slot(&sb, "", "output_proj.weight", &m->out_w, c->vocab_size, c->dim);
    add_slot(&sb, "", "output_proj.bias", &m->out_b, c->vocab_size, 0);
  }
  if (c->kind == POSE_MODEL_CLASSIFIER) {
    add_slot(&sb, "", "classifier.weight", &m->out_w, c->num_classes, c->dim);
    add_slot(&sb, "", "classifier.bias", &m->out_b, c->num_classes, 0);
  }
  m->num_slots = sb.n;
  return sb.failed ? POSE_ERR_OUT_OF_MEMORY : POSE_OK;
}

void pose_model_free(pose_model *m) {
  if (m == NULL) return;
  if (m->slots != NULL) {
    for (size_t i = 0; i < m->num_slots; i++) {
      if (m->slots[i].data != NULL) {
        pose_free(*m->slots[i].data);
        *m->slots[i].data = NULL;
      }
      pose_free(m->slots[i].name);
    }
    pose_free(m->slots);
  }
  pose_free(m->layers);
  pose_free(m);
}

pose_status pose_model_new(const pose_model_config *c, pose_model **out) {
  *out = NULL;
  pose_model *m = pose_calloc(1, sizeof *m);
  if (m == NULL) return POSE_ERR_OUT_OF_MEMORY;
  m->cfg = *c;
  m->layers = pose_calloc(c->num_layers, sizeof *m->layers);
  pose_status st = m->layers == NULL ? POSE_ERR_OUT_OF_MEMORY : build_slots(m);
  for (size_t i = 0; st == POSE_OK && i < c->num_layers; i++) {
    pose_attention_module *a = &m->layers[i].attn;
    pose_attention_config_init(&a->cfg);
    a->cfg.layout = POSE_LAYOUT_QUERY_KEY_VALUE;
    a->cfg.mode = c->mode;
    a->cfg.dim = c->dim;
    a->cfg.num_heads = c->num_heads;
    a->cfg.skip_factor = c->skip_factor;
    a->cfg.max_seq_len = c->max_seq_len;
    a->cfg.window = c->window;
    a->cfg.causal = c->causal;
    a->cfg.levels = c->levels;
    a->cfg.top_m = c->top_m;
    a->cfg.num_global = c->num_global;
    a->head_dim = c->dim / c->num_heads;
    a->scale = (float)(1.0 / sqrt((double)a->head_dim));
  }
  for (size_t i = 0; st == POSE_OK && i < m->num_slots; i++) {
    *m->slots[i].data = pose_alloc_floats(m->slots[i].count);
    if (*m->slots[i].data == NULL) st = POSE_ERR_OUT_OF_MEMORY;
  }
  if (st != POSE_OK) {
    pose_model_free(m);
    return st;
  }
  *out = m;
  return POSE_OK;
}

static bool is_layer_norm(const char *name) {
  return strstr(name, "norm1.") != NULL || strstr(name, "norm2.") != NULL;
}

void pose_model_init_random(pose_model *m) {
  pose_rng rng;
  pose_rng_seed(&rng, m->cfg.seed);
  /* Walk the state_dict in order: a Linear's weight is followed by its bias. */
  for (size_t i = 0; i < m->num_slots; i++) {
    pose_model_slot *s = &m->slots[i];
    float *p = *s->data;
    if (strcmp(s->name, "embedding.weight") == 0) {
      for (size_t j = 0; j < s->count; j++) p[j] = pose_rng_normal(&rng);
    } else if (is_layer_norm(s->name)) {
      float v = strstr(s->name, ".weight") != NULL ? 1.0f : 0.0f;
      for (size_t j = 0; j < s->count; j++) p[j] = v;
    } else if (s->ndim == 2) {
      float *bias = i + 1 < m->num_slots ? *m->slots[i + 1].data : NULL;
      pose_rng_linear(&rng, s->shape[0], s->shape[1], p, bias);
      i++; /* the bias was filled too */
    }
  }
}

pose_status pose_model_create(const pose_model_config *cfg, pose_model **out) {
  static const char fn[] = "pose_model_create";
  POSE_CHECK_PTR(fn, out);
  *out = NULL;
  pose_model_config c;
  pose_status st = pose_model_config_check(fn, cfg, &c);
  if (st != POSE_OK) return st;
  pose_model *m;
  st = pose_model_new(&c, &m);
  if (st != POSE_OK) return st;
  pose_model_init_random(m);
  *out = m;
  return POSE_OK;
}

size_t pose_model_find_slot(const pose_model *m, const char *name) {
  for (size_t i = 0; i < m->num_slots; i++) {
    if (strcmp(m->slots[i].name, name) == 0) return i;
  }
  return m->num_slots;
}

pose_status pose_model_create_from_weights(const pose_model_config *cfg, const pose_weight *weights,
                                           size_t num_weights, pose_model **out) {
  static const char fn[] = "pose_model_create_from_weights";
  POSE_CHECK_PTR(fn, out);
  *out = NULL;
  if (weights == NULL && num_weights != 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: weights is NULL", fn);
  }
  pose_model_config c;
  pose_status st = pose_model_config_check(fn, cfg, &c);
  if (st != POSE_OK) return st;
  pose_model *m;
  st = pose_model_new(&c, &m);
  if (st != POSE_OK) return st;
  bool *seen = pose_calloc(m->num_slots, sizeof *seen);
  if (seen == NULL) st = POSE_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; st == POSE_OK && i < num_weights; i++) {
    const pose_weight *w = &weights[i];
    size_t s = w->name != NULL ? pose_model_find_slot(m, w->name) : 0;
    if (w->name == NULL) {
      st = pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: weights[%zu].name is NULL", fn, i);
    } else if (s == m->num_slots) {
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: unexpected tensor \"%s\" for a %s", fn, w->name,
                     pose_model_kind_string(c.kind));
    } else if (seen[s]) {
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" given twice", fn, w->name);
    } else if (w->data == NULL) {
      st = pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" data is NULL", fn, w->name);
    } else if (w->count != m->slots[s].count) {
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" has %zu elements, expected %zu", fn,
                     w->name, w->count, m->slots[s].count);
    } else {
      memcpy(*m->slots[s].data, w->data, w->count * sizeof(float));
      seen[s] = true;
    }
  }
  for (size_t s = 0; st == POSE_OK && s < m->num_slots; s++) {
    if (!seen[s]) {
      st = pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" is missing", fn, m->slots[s].name);
    }
  }
  pose_free(seen);
  if (st != POSE_OK) {
    pose_model_free(m);
    return st;
  }
  *out = m;
  return POSE_OK;
}

pose_status pose_model_get_config(const pose_model *model, pose_model_config *cfg) {
  static const char fn[] = "pose_model_get_config";
  POSE_CHECK_PTR(fn, model);
  POSE_CHECK_PTR(fn, cfg);
  if (cfg->struct_size < MODEL_CONFIG_V1_SIZE) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: cfg->struct_size is %zu, need >= %zu (call pose_model_config_init "
                     "first)",
                     fn, cfg->struct_size, (size_t)MODEL_CONFIG_V1_SIZE);
  }
  size_t n = cfg->struct_size < sizeof model->cfg ? cfg->struct_size : sizeof model->cfg;
  memcpy(cfg, &model->cfg, n);
  cfg->struct_size = n;
  return POSE_OK;
}

pose_status pose_model_get_weight(const pose_model *model, const char *name, const float **data,
                                  size_t *count) {
  static const char fn[] = "pose_model_get_weight";
  POSE_CHECK_PTR(fn, model);
  POSE_CHECK_PTR(fn, name);
  POSE_CHECK_PTR(fn, data);
  POSE_CHECK_PTR(fn, count);
  size_t s = pose_model_find_slot(model, name);
  if (s == model->num_slots) {
    return pose_fail(POSE_ERR_WEIGHTS, "%s: the %s has no tensor \"%s\"", fn,
                     pose_model_kind_string(model->cfg.kind), name);
  }
  *data = *model->slots[s].data;
  *count = model->slots[s].count;
  return POSE_OK;
}

size_t pose_model_num_weights(const pose_model *model) {
  return model == NULL ? 0 : model->num_slots;
}

const char *pose_model_weight_name(const pose_model *model, size_t index) {
  if (model == NULL || index >= model->num_slots) return NULL;
  return model->slots[index].name;
}

pose_status pose_model_layer_info(const pose_model *model, size_t layer_index,
                                  pose_layer_info *info) {
  static const char fn[] = "pose_model_layer_info";
  POSE_CHECK_PTR(fn, model);
  POSE_CHECK_PTR(fn, info);
  if (layer_index >= model->cfg.num_layers) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: layer_index is %zu, the model has %zu", fn,
                     layer_index, model->cfg.num_layers);
  }
  if (info->struct_size < LAYER_INFO_V1_SIZE) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: info->struct_size is %zu, need >= %zu (set it to "
                     "sizeof(pose_layer_info))",
                     fn, info->struct_size, (size_t)LAYER_INFO_V1_SIZE);
  }
  const pose_attention_config *a = &model->layers[layer_index].attn.cfg;
  pose_layer_info full;
  full.struct_size = info->struct_size < sizeof full ? info->struct_size : sizeof full;
  full.mode = a->mode;
  full.skip_factor = a->mode == POSE_MODE_FULL ? 1 : a->skip_factor;
  full.max_seq_len = a->max_seq_len;
  full.num_heads = a->num_heads;
  full.dim = a->dim;
  full.ff_dim = model->cfg.ff_dim;
  full.window = a->mode == POSE_MODE_LOCAL_STRIDED ? a->window : 0;
  full.causal = a->causal;
  full.levels = a->mode == POSE_MODE_HIERARCHICAL ? a->levels : 0;
  full.top_m = a->mode == POSE_MODE_IMPORTANCE ? a->top_m : 0;
  full.num_global = a->mode == POSE_MODE_LOCAL_STRIDED ? a->num_global : 0;
  /* An older caller's smaller struct receives the fields it knows. */
  memcpy(info, &full, full.struct_size);
  return POSE_OK;
}
