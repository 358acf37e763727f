/* Loading and saving pose_model as safetensors, by the PyTorch modules' state_dict names. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pose_internal.h"

#define LOAD_OPTIONS_V1_SIZE (offsetof(pose_load_options, positional_encoding) + sizeof(int))

void pose_load_options_init(pose_load_options *opts) {
  if (opts == NULL) return;
  memset(opts, 0, sizeof *opts);
  opts->struct_size = sizeof *opts;
  opts->mode = POSE_MODE_STRIDED;
  opts->skip_factor = 0;
  opts->max_seq_len = 1000;
  opts->num_heads = 1;
  opts->positional_encoding = 0;
}

/* ---- metadata ------------------------------------------------------------------------------
 * The seed constructors' argument names per kind, and the config field each one sets. */
typedef struct meta_field {
  const char *key;
  size_t offset; /* of a size_t field in pose_model_config */
} meta_field;

#define FIELD(key, field) \
  { key, offsetof(pose_model_config, field) }
static const meta_field layer_fields[] = {
    FIELD("dim", dim), FIELD("skip_factor", skip_factor), FIELD("ff_dim", ff_dim), {NULL, 0}};
static const meta_field encoder_fields[] = {FIELD("dim", dim),
                                            FIELD("ff_dim", ff_dim),
                                            FIELD("num_layers", num_layers),
                                            FIELD("skip_factor", skip_factor),
                                            {NULL, 0}};
static const meta_field summarizer_fields[] = {FIELD("vocab_size", vocab_size),
                                               FIELD("embed_dim", dim),
                                               FIELD("num_layers", num_layers),
                                               FIELD("skip_factor", skip_factor),
                                               {NULL, 0}};
static const meta_field classifier_fields[] = {
    FIELD("input_dim", input_dim),    FIELD("hidden_dim", dim),
    FIELD("num_layers", num_layers),  FIELD("skip_factor", skip_factor),
    FIELD("num_genres", num_classes), {NULL, 0}};
#undef FIELD

static const meta_field *fields_of(pose_model_kind kind) {
  switch (kind) {
    case POSE_MODEL_LAYER: return layer_fields;
    case POSE_MODEL_ENCODER: return encoder_fields;
    case POSE_MODEL_SUMMARIZER: return summarizer_fields;
    case POSE_MODEL_CLASSIFIER: return classifier_fields;
  }
  return NULL;
}

static size_t *field_ptr(pose_model_config *c, const meta_field *f) {
  return (size_t *)((char *)c + f->offset);
}

/* Strict decimal: digits only, no sign, no spaces, no overflow. */
static bool parse_size(const char *s, size_t *out) {
  if (s == NULL || *s == '\0') return false;
  size_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    if (!pose_mul(v, 10, &v) || !pose_add(v, (size_t)(*s - '0'), &v)) return false;
  }
  *out = v;
  return true;
}

static pose_status meta_size(const char *fn, const pose_st_file *f, const char *key, size_t *out,
                             bool *found) {
  const char *v = pose_st_meta_get(f, key);
  *found = v != NULL;
  if (v == NULL) return POSE_OK;
  if (!parse_size(v, out)) {
    return pose_fail(POSE_ERR_FORMAT, "%s: metadata \"%s\" is \"%s\", need a decimal integer", fn,
                     key, v);
  }
  return POSE_OK;
}

/* ---- inferring a config -------------------------------------------------------------------- */

static const char *encoder_prefix(pose_model_kind kind) {
  return kind == POSE_MODEL_LAYER     ? ""
         : kind == POSE_MODEL_ENCODER ? "layers.0."
                                      : "pose_encoder.layers.0.";
}

static pose_status infer_kind(const char *fn, const pose_st_file *f, pose_model_kind *kind) {
  const char *k = pose_st_meta_get(f, "kind");
  if (k != NULL) {
    for (int i = POSE_MODEL_LAYER; i <= POSE_MODEL_CLASSIFIER; i++) {
      if (strcmp(k, pose_model_kind_string((pose_model_kind)i)) == 0) {
        *kind = (pose_model_kind)i;
        return POSE_OK;
      }
    }
    return pose_fail(POSE_ERR_FORMAT,
                     "%s: metadata \"kind\" is \"%s\", need layer, encoder, summarizer or "
                     "classifier",
                     fn, k);
  }
  if (pose_st_find(f, "embedding.weight") != NULL) {
    *kind = POSE_MODEL_SUMMARIZER;
  } else if (pose_st_find(f, "feature_extractor.weight") != NULL) {
    *kind = POSE_MODEL_CLASSIFIER;
  } else if (pose_st_find(f, "layers.0.attn.query.weight") != NULL) {
    *kind = POSE_MODEL_ENCODER;
  } else if (pose_st_find(f, "attn.query.weight") != NULL) {
    *kind = POSE_MODEL_LAYER;
  } else {
    return pose_fail(POSE_ERR_WEIGHTS,
                     "%s: cannot tell the model kind: no \"kind\" metadata and none of "
                     "embedding.weight, feature_extractor.weight, layers.0.attn.query.weight, "
                     "attn.query.weight",
                     fn);
  }
  return POSE_OK;
}

/* Dimension `axis` of a tensor that must exist with ndim dimensions. */
static pose_status shape_of(const char *fn, const pose_st_file *f, const char *prefix,
                            const char *name, size_t ndim, size_t axis, size_t *out) {
  char full[256];
  snprintf(full, sizeof full, "%s%s", prefix, name);
  const pose_st_tensor *t = pose_st_find(f, full);
  if (t == NULL) return pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" is missing", fn, full);
  if (t->ndim != ndim) {
    return pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" has %zu dimensions, expected %zu", fn,
                     full, t->ndim, ndim);
  }
  *out = t->shape[axis];
  return POSE_OK;
}

/* Sizes the tensors tell: widths, vocabulary, classes, number of layers. */
static pose_status infer_sizes(const char *fn, const pose_st_file *f, pose_model_config *c) {
  const char *p = encoder_prefix(c->kind);
  pose_status st = shape_of(fn, f, p, "attn.query.weight", 2, 0, &c->dim);
  if (st == POSE_OK) st = shape_of(fn, f, p, "ff.0.weight", 2, 0, &c->ff_dim);
  if (st == POSE_OK && c->kind == POSE_MODEL_SUMMARIZER) {
    st = shape_of(fn, f, "", "embedding.weight", 2, 0, &c->vocab_size);
  }
  if (st == POSE_OK && c->kind == POSE_MODEL_CLASSIFIER) {
    st = shape_of(fn, f, "", "feature_extractor.weight", 2, 1, &c->input_dim);
    if (st == POSE_OK) st = shape_of(fn, f, "", "classifier.weight", 2, 0, &c->num_classes);
  }
  if (st != POSE_OK) return st;
  if (c->kind == POSE_MODEL_LAYER) {
    c->num_layers = 1;
  } else {
    const char *base = c->kind == POSE_MODEL_ENCODER ? "layers." : "pose_encoder.layers.";
    size_t n = 0;
    for (;; n++) {
      char name[256];
      snprintf(name, sizeof name, "%s%zu.attn.query.weight", base, n);
      if (pose_st_find(f, name) == NULL) break;
    }
    c->num_layers = n;
  }
  return POSE_OK;
}

static pose_status config_from_file(const char *fn, const pose_st_file *f,
                                    const pose_load_options *o, pose_model_config *c) {
  pose_model_kind kind = POSE_MODEL_LAYER;
  pose_status st = infer_kind(fn, f, &kind);
  if (st != POSE_OK) return st;
  pose_model_config_init(c, kind);
  st = infer_sizes(fn, f, c);
  if (st != POSE_OK) return st;
  /* Options first, then whatever the file says wins. */
  c->mode = o->mode;
  c->skip_factor = o->skip_factor;
  c->max_seq_len = o->max_seq_len;
  c->num_heads = o->num_heads;
  c->positional_encoding = o->positional_encoding;
  c->window = o->window;
  c->causal = o->causal;
  c->levels = o->levels;
  c->top_m = o->top_m;
  c->num_global = o->num_global;
  bool found;
  for (const meta_field *m = fields_of(kind); m->key != NULL && st == POSE_OK; m++) {
    st = meta_size(fn, f, m->key, field_ptr(c, m), &found);
  }
  size_t v = 0;
  if (st == POSE_OK) st = meta_size(fn, f, "pose.num_heads", &c->num_heads, &found);
  if (st == POSE_OK) st = meta_size(fn, f, "pose.max_seq_len", &c->max_seq_len, &found);
  if (st == POSE_OK) st = meta_size(fn, f, "pose.positional_encoding", &v, &found);
  if (st == POSE_OK && found) c->positional_encoding = (int)(v > 1 ? 2 : v);
  if (st == POSE_OK) st = meta_size(fn, f, "pose.window", &c->window, &found);
  if (st == POSE_OK) st = meta_size(fn, f, "pose.causal", &v, &found);
  /* A value past 1 is kept so that the config check names it. */
  if (st == POSE_OK && found) c->causal = (int)(v > 1 ? 2 : v);
  if (st == POSE_OK) st = meta_size(fn, f, "pose.levels", &c->levels, &found);
  if (st == POSE_OK) st = meta_size(fn, f, "pose.top_m", &c->top_m, &found);
  if (st == POSE_OK) st = meta_size(fn, f, "pose.num_global", &c->num_global, &found);
  const char *mode = pose_st_meta_get(f, "pose.mode");
  if (st == POSE_OK && mode != NULL) {
    int i = POSE_MODE_FULL;
    while (i <= POSE_MODE_IMPORTANCE && strcmp(mode, pose_attention_mode_string(i)) != 0) i++;
    if (i > POSE_MODE_IMPORTANCE) {
      st = pose_fail(POSE_ERR_FORMAT,
                     "%s: metadata \"pose.mode\" is \"%s\", need full, strided, adaptive, "
                     "local_strided, hierarchical or importance",
                     fn, mode);
    }
    c->mode = (pose_attention_mode)i;
  }
  const char *eps = pose_st_meta_get(f, "pose.layer_norm_eps");
  if (st == POSE_OK && eps != NULL) {
    char *end;
    errno = 0;
    double e = strtod(eps, &end);
    if (errno != 0 || *end != '\0' || end == eps || !(e >= 0.0) || isinf(e)) {
      st = pose_fail(POSE_ERR_FORMAT, "%s: metadata \"pose.layer_norm_eps\" is \"%s\"", fn, eps);
    }
    c->layer_norm_eps = (float)e;
  }
  if (st != POSE_OK) return st;
  if (c->mode != POSE_MODE_FULL && c->mode != POSE_MODE_ADAPTIVE && c->skip_factor == 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: the file does not give a skip_factor: set pose_load_options.skip_factor",
                     fn);
  }
  return POSE_OK;
}

/* Copies every state_dict tensor into the model, checking names and shapes strictly. */
static pose_status fill_weights(const char *fn, pose_model *m, const pose_st_file *f) {
  for (size_t i = 0; i < m->num_slots; i++) {
    const pose_model_slot *s = &m->slots[i];
    const pose_st_tensor *t = pose_st_find(f, s->name);
    if (t == NULL) {
      return pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" is missing", fn, s->name);
    }
    bool same = t->ndim == s->ndim;
    for (size_t d = 0; same && d < s->ndim; d++) same = t->shape[d] == s->shape[d];
    if (!same) {
      char got[160] = "", want[64];
      size_t used = 0;
      for (size_t d = 0; d < t->ndim && used < sizeof got - 24; d++) {
        used += (size_t)snprintf(got + used, sizeof got - used, d ? ", %zu" : "%zu", t->shape[d]);
      }
      if (s->ndim == 2) {
        snprintf(want, sizeof want, "%zu, %zu", s->shape[0], s->shape[1]);
      } else {
        snprintf(want, sizeof want, "%zu", s->shape[0]);
      }
      return pose_fail(POSE_ERR_WEIGHTS, "%s: tensor \"%s\" has shape [%s], expected [%s]", fn,
                       s->name, got, want);
    }
    memcpy(*s->data, t->data, s->count * sizeof(float));
  }
  for (size_t i = 0; i < f->num_tensors; i++) {
    if (pose_model_find_slot(m, f->tensors[i].name) == m->num_slots) {
      return pose_fail(POSE_ERR_WEIGHTS, "%s: unexpected tensor \"%s\" for a %s", fn,
                       f->tensors[i].name, pose_model_kind_string(m->cfg.kind));
    }
  }
  return POSE_OK;
}

static pose_status model_from_file(const char *fn, const pose_st_file *f,
                                   const pose_load_options *opts, pose_model **out) {
  pose_load_options o;
  pose_load_options_init(&o);
  if (opts != NULL) {
    if (opts->struct_size < LOAD_OPTIONS_V1_SIZE) {
      return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                       "%s: opts->struct_size is %zu, need >= %zu (call pose_load_options_init)",
                       fn, opts->struct_size, (size_t)LOAD_OPTIONS_V1_SIZE);
    }
    memcpy(&o, opts, opts->struct_size < sizeof o ? opts->struct_size : sizeof o);
  }
  pose_model_config c;
  pose_status st = config_from_file(fn, f, &o, &c);
  pose_model_config norm;
  if (st == POSE_OK) st = pose_model_config_check(fn, &c, &norm);
  pose_model *m = NULL;
  if (st == POSE_OK) st = pose_model_new(&norm, &m);
  if (st == POSE_OK) st = fill_weights(fn, m, f);
  if (st != POSE_OK) {
    pose_model_free(m);
    return st;
  }
  *out = m;
  return POSE_OK;
}

pose_status pose_model_load(const char *path, const pose_load_options *opts, pose_model **out) {
  static const char fn[] = "pose_model_load";
  POSE_CHECK_PTR(fn, out);
  *out = NULL;
  POSE_CHECK_PTR(fn, path);
  pose_st_file f;
  pose_status st = pose_st_read_file(path, &f);
  if (st != POSE_OK) return st;
  st = model_from_file(fn, &f, opts, out);
  pose_st_file_free(&f);
  return st;
}

pose_status pose_model_load_memory(const void *data, size_t size, const pose_load_options *opts,
                                   pose_model **out) {
  static const char fn[] = "pose_model_load_memory";
  POSE_CHECK_PTR(fn, out);
  *out = NULL;
  POSE_CHECK_PTR(fn, data);
  pose_st_file f;
  pose_status st = pose_st_parse(data, size, &f);
  if (st != POSE_OK) return st;
  st = model_from_file(fn, &f, opts, out);
  pose_st_file_free(&f);
  return st;
}

/* ---- saving -------------------------------------------------------------------------------- */

#define MAX_META 20

pose_status pose_model_save(const pose_model *model, const char *path) {
  static const char fn[] = "pose_model_save";
  POSE_CHECK_PTR(fn, model);
  POSE_CHECK_PTR(fn, path);
  const pose_model_config *c = &model->cfg;
  /* Metadata values live in one fixed buffer: every value is a short number or word. */
  char values[MAX_META][32];
  const char *kv[2 * MAX_META];
  size_t n = 0;
  kv[2 * n] = "kind";
  kv[2 * n + 1] = pose_model_kind_string(c->kind);
  n++;
  for (const meta_field *m = fields_of(c->kind); m->key != NULL; m++) {
    snprintf(values[n], sizeof values[n], "%zu", *field_ptr((pose_model_config *)c, m));
    kv[2 * n] = m->key;
    kv[2 * n + 1] = values[n];
    n++;
  }
  struct {
    const char *key;
    size_t value;
  } extras[] = {{"pose.num_heads", c->num_heads},
                {"pose.max_seq_len", c->max_seq_len},
                {"pose.positional_encoding", (size_t)c->positional_encoding},
                {"pose.window", c->window},
                {"pose.causal", (size_t)c->causal},
                {"pose.levels", c->levels},
                {"pose.top_m", c->top_m},
                {"pose.num_global", c->num_global}};
  for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++) {
    snprintf(values[n], sizeof values[n], "%zu", extras[i].value);
    kv[2 * n] = extras[i].key;
    kv[2 * n + 1] = values[n];
    n++;
  }
  kv[2 * n] = "pose.mode";
  kv[2 * n + 1] = pose_attention_mode_string(c->mode);
  n++;
  snprintf(values[n], sizeof values[n], "%.9g", (double)c->layer_norm_eps);
  kv[2 * n] = "pose.layer_norm_eps";
  kv[2 * n + 1] = values[n];
  n++;
  kv[2 * n] = "pose.version";
  kv[2 * n + 1] = POSE_VERSION_STRING;
  n++;

  pose_st_out *tensors = pose_calloc(model->num_slots, sizeof *tensors);
  if (tensors == NULL) return POSE_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < model->num_slots; i++) {
    const pose_model_slot *s = &model->slots[i];
    tensors[i].name = s->name;
    tensors[i].data = *s->data;
    tensors[i].ndim = s->ndim;
    tensors[i].shape[0] = s->shape[0];
    tensors[i].shape[1] = s->shape[1];
  }
  pose_status st = pose_st_write_file(path, tensors, model->num_slots, kv, n);
  pose_free(tensors);
  return st;
}
