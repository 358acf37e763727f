/*
 * safetensors reading and writing.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON (an object mapping each
 * tensor name to {"dtype", "shape", "data_offsets"}, plus an optional "__metadata__" object of
 * strings), then one byte buffer that the tensors' data_offsets tile exactly.
 *
 * Files come from strangers. So: the JSON is parsed by Jansson, not by us; every declared size
 * is checked against the real size before anything is allocated for it; the checks of the
 * reference (Rust) loader are all applied, plus a few of our own (unique, non-empty names);
 * and data is decoded byte by byte, never through a cast pointer, because the data buffer
 * starts at 8 + N and has no alignment guarantee.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pose_internal.h"

/* The reference loader refuses larger headers; we refuse them before reading a byte of JSON. */
#define ST_MAX_HEADER 100000000u
#define ST_META "__metadata__"
/* Room for "[d0, d1, ..., d7, ...]" with 20-digit dimensions. */
#define ST_SHAPE_TEXT 200
/* Largest value a Jansson integer holds, for what the writer puts into the header. */
#if JSON_INTEGER_IS_LONG_LONG
#  define ST_JSON_INT_MAX ((uint64_t)LLONG_MAX)
#else
#  define ST_JSON_INT_MAX ((uint64_t)LONG_MAX)
#endif

/* ---- dtypes ----------------------------------------------------------------------------- */

typedef enum st_conv { ST_NONE, ST_F32, ST_F16, ST_BF16 } st_conv;

typedef struct st_dtype {
  const char *name;
  unsigned bits;
  st_conv conv; /* ST_NONE: a dtype of the format that libpose does not convert */
} st_dtype;

/* Every dtype the reference knows: a known one we do not convert is POSE_ERR_UNSUPPORTED, a
 * string not in this table is a malformed file. */
static const st_dtype st_dtypes[] = {
    {"F32", 32, ST_F32},         {"F16", 16, ST_F16},     {"BF16", 16, ST_BF16},
    {"F64", 64, ST_NONE},        {"I64", 64, ST_NONE},    {"U64", 64, ST_NONE},
    {"C64", 64, ST_NONE},        {"I32", 32, ST_NONE},    {"U32", 32, ST_NONE},
    {"I16", 16, ST_NONE},        {"U16", 16, ST_NONE},    {"I8", 8, ST_NONE},
    {"U8", 8, ST_NONE},          {"BOOL", 8, ST_NONE},    {"F8_E4M3", 8, ST_NONE},
    {"F8_E5M2", 8, ST_NONE},     {"F8_E8M0", 8, ST_NONE}, {"F8_E4M3FNUZ", 8, ST_NONE},
    {"F8_E5M2FNUZ", 8, ST_NONE}, {"F6_E2M3", 6, ST_NONE}, {"F6_E3M2", 6, ST_NONE},
    {"F4", 4, ST_NONE},
};

static const st_dtype *st_dtype_find(const char *name) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
    if (strcmp(st_dtypes[i].name, name) == 0) return &st_dtypes[i];
  }
  return NULL;
}

/* ---- little-endian bytes and float conversions ------------------------------------------ */

static uint16_t st_le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t st_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t st_le64(const unsigned char *p) {
  return (uint64_t)st_le32(p) | (uint64_t)st_le32(p + 4) << 32;
}

static void st_put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static float st_bits_float(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static void st_put_f32(unsigned char *p, float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(u >> (8 * i));
}

/* IEEE binary16 to binary32 is exact: every half value, subnormals included, is a float. */
static float st_f16(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) return st_bits_float(sign | 0x7F800000u | mant << 13); /* inf, NaN payload */
  if (exp != 0) return st_bits_float(sign | (exp + 112) << 23 | mant << 13);
  if (mant == 0) return st_bits_float(sign);
  /* Subnormal half, normal float: shift the leading 1 into the implicit bit, lowering the
   * exponent (113 is 2^-14, the exponent of the smallest normal half) once per shift. */
  uint32_t e = 113;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    e--;
  }
  return st_bits_float(sign | e << 23 | (mant & 0x3FFu) << 13);
}

/* bfloat16 is the top half of a float32. */
static float st_bf16(uint16_t h) { return st_bits_float((uint32_t)h << 16); }

/* ---- parsing: the header ---------------------------------------------------------------- */

/* A tensor entry of the header, checked but not yet converted. */
typedef struct st_entry {
  const char *name; /* borrowed from the parsed JSON */
  const st_dtype *dtype;
  size_t ndim; /* as declared; only the first POSE_ST_MAX_DIMS are kept in shape */
  size_t shape[POSE_ST_MAX_DIMS];
  size_t count;
  size_t begin, end; /* data_offsets, known to lie inside the data buffer */
} st_entry;

typedef struct st_header {
  json_t *root;
  json_t *meta; /* borrowed from root, or NULL */
  st_entry *entries;
  st_entry **by_offset;
  size_t num_entries;
  size_t data_len;
} st_header;

static void st_header_release(st_header *h) {
  json_decref(h->root);
  pose_free(h->entries);
  pose_free(h->by_offset);
  memset(h, 0, sizeof *h);
}

static const char *st_type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
  }
  return "an unknown JSON value";
}

/* "[4, 8]"; dimensions past POSE_ST_MAX_DIMS were not kept and show as "...". */
static const char *st_shape_text(const st_entry *e, char *buf, size_t cap) {
  size_t used = (size_t)snprintf(buf, cap, "[");
  size_t kept = e->ndim < POSE_ST_MAX_DIMS ? e->ndim : POSE_ST_MAX_DIMS;
  for (size_t i = 0; i < kept && used < cap; i++) {
    used += (size_t)snprintf(buf + used, cap - used, "%s%zu", i ? ", " : "", e->shape[i]);
  }
  if (used < cap) snprintf(buf + used, cap - used, "%s]", e->ndim > kept ? ", ..." : "");
  return buf;
}

static pose_status st_read_length(const unsigned char *p, size_t size, size_t *header_len) {
  if (size < 8) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: file is %zu bytes, too short for the 8-byte header length",
                     size);
  }
  uint64_t n = st_le64(p);
  /* Compared against the bound and against size - 8 (not 8 + n), so nothing can wrap. */
  if (n > ST_MAX_HEADER) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: header length %" PRIu64
                     " exceeds the %u-byte limit (file size %zu)",
                     n, ST_MAX_HEADER, size);
  }
  if (n > size - 8) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: header length %" PRIu64
                     " exceeds file size %zu (%zu bytes follow the length field)",
                     n, size, size - 8);
  }
  *header_len = (size_t)n;
  return POSE_OK;
}

/* True when text[i] is preceded by an odd number of backslashes (an escaped quote). */
static bool st_escaped(const char *text, size_t i) {
  size_t n = 0;
  while (i > n && text[i - 1 - n] == '\\') n++;
  return n % 2 == 1;
}

/* Jansson reports a duplicate key without its name (beyond 20 characters) but stops right
 * after the key's closing quote: find the opening quote to name the key. */
static pose_status st_duplicate_key(const char *text, size_t len, int position) {
  if (position >= 2 && (size_t)position <= len && text[position - 1] == '"') {
    size_t close = (size_t)position - 1;
    for (size_t open = close; open-- > 0;) {
      if (text[open] == '"' && !st_escaped(text, open)) {
        int shown = close - open - 1 > 200 ? 200 : (int)(close - open - 1);
        return pose_fail(POSE_ERR_FORMAT,
                         "safetensors: duplicate key \"%.*s\" in the header (tensor names "
                         "must be unique)",
                         shown, text + open + 1);
      }
    }
  }
  return pose_fail(POSE_ERR_FORMAT,
                   "safetensors: duplicate key in the header near byte %d (tensor names must be "
                   "unique)",
                   position);
}

static pose_status st_load_json(const char *text, size_t len, json_t **root) {
  /* The reference requires the '{' first: no BOM, no leading whitespace. */
  if (len == 0 || text[0] != '{') {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: header must be a JSON object starting with '{'");
  }
  json_error_t err;
  /* No JSON_DISABLE_EOF_CHECK: Jansson then accepts trailing whitespace (the space padding
   * writers add) and rejects anything else after the object, NUL bytes included. */
  *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  if (*root != NULL) return POSE_OK;
  switch (json_error_code(&err)) {
    case json_error_out_of_memory:
      return pose_fail(POSE_ERR_OUT_OF_MEMORY, "safetensors: out of memory parsing the header");
    case json_error_duplicate_key: return st_duplicate_key(text, len, err.position);
    default:
      return pose_fail(POSE_ERR_FORMAT,
                       "safetensors: header is not valid JSON: %s (at byte %d of the header)",
                       err.text, err.position);
  }
}

static pose_status st_check_meta(json_t *meta) {
  if (!json_is_object(meta)) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: \"" ST_META "\" must be an object of strings, got %s",
                     st_type_name(meta));
  }
  const char *key;
  json_t *value;
  json_object_foreach(meta, key, value) {
    if (!json_is_string(value)) {
      return pose_fail(POSE_ERR_FORMAT,
                       "safetensors: \"" ST_META "\" key \"%s\" must map to a string, got %s", key,
                       st_type_name(value));
    }
  }
  return POSE_OK;
}

static pose_status st_missing(const char *name, const char *field) {
  return pose_fail(POSE_ERR_FORMAT, "safetensors: tensor \"%s\": missing \"%s\"", name, field);
}

/* A JSON non-negative integer, or false with *what describing what it was instead. */
static bool st_uint(const json_t *v, uint64_t *out, char *what, size_t cap) {
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (uint64_t)json_integer_value(v);
    return true;
  }
  if (json_is_integer(v)) {
    snprintf(what, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
  } else {
    snprintf(what, cap, "%s", st_type_name(v));
  }
  return false;
}

static pose_status st_parse_dtype(const char *name, const json_t *v, st_entry *e) {
  if (v == NULL) return st_missing(name, "dtype");
  if (!json_is_string(v)) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": \"dtype\" must be a string, "
                     "got %s",
                     name, st_type_name(v));
  }
  e->dtype = st_dtype_find(json_string_value(v));
  if (e->dtype == NULL) {
    return pose_fail(POSE_ERR_FORMAT, "safetensors: tensor \"%s\": unknown dtype \"%s\"", name,
                     json_string_value(v));
  }
  return POSE_OK;
}

static pose_status st_parse_shape(const char *name, const json_t *v, st_entry *e) {
  if (v == NULL) return st_missing(name, "shape");
  if (!json_is_array(v)) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": \"shape\" must be an array of non-negative "
                     "integers, got %s",
                     name, st_type_name(v));
  }
  e->ndim = json_array_size(v);
  e->count = 1;
  bool overflow = false;
  for (size_t i = 0; i < e->ndim; i++) {
    uint64_t dim;
    char what[64];
    if (!st_uint(json_array_get(v, i), &dim, what, sizeof what)) {
      return pose_fail(POSE_ERR_FORMAT,
                       "safetensors: tensor \"%s\": shape[%zu] must be a non-negative integer, "
                       "got %s",
                       name, i, what);
    }
    if (i < POSE_ST_MAX_DIMS) e->shape[i] = (size_t)dim;
    /* Checked like the reference's product: a count that wraps could match a tiny range. */
    if (dim > SIZE_MAX || !pose_mul(e->count, (size_t)dim, &e->count)) overflow = true;
  }
  if (overflow) {
    char text[ST_SHAPE_TEXT];
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": the element count of shape %s overflows size_t",
                     name, st_shape_text(e, text, sizeof text));
  }
  return POSE_OK;
}

static pose_status st_parse_offsets(const char *name, const json_t *v, size_t data_len,
                                    st_entry *e) {
  if (v == NULL) return st_missing(name, "data_offsets");
  if (!json_is_array(v)) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": \"data_offsets\" must be [begin, end], got %s",
                     name, st_type_name(v));
  }
  if (json_array_size(v) != 2) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": \"data_offsets\" must be [begin, end], got %zu "
                     "elements",
                     name, json_array_size(v));
  }
  uint64_t off[2];
  for (size_t i = 0; i < 2; i++) {
    char what[64];
    if (!st_uint(json_array_get(v, i), &off[i], what, sizeof what)) {
      return pose_fail(POSE_ERR_FORMAT,
                       "safetensors: tensor \"%s\": data_offsets[%zu] must be a non-negative "
                       "integer, got %s",
                       name, i, what);
    }
  }
  if (off[0] > off[1]) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
                     "] begin after they end",
                     name, off[0], off[1]);
  }
  if (off[1] > data_len) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
                     "] end past the data buffer, which is %zu bytes",
                     name, off[0], off[1], data_len);
  }
  e->begin = (size_t)off[0];
  e->end = (size_t)off[1];
  return POSE_OK;
}

static pose_status st_check_bytes(const st_entry *e) {
  char text[ST_SHAPE_TEXT];
  size_t bits;
  if (!pose_mul(e->count, e->dtype->bits, &bits)) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": the byte size of shape %s %s overflows size_t",
                     e->name, st_shape_text(e, text, sizeof text), e->dtype->name);
  }
  if (bits % 8 != 0) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": shape %s %s is %zu bits, not whole bytes",
                     e->name, st_shape_text(e, text, sizeof text), e->dtype->name, bits);
  }
  if (e->end - e->begin != bits / 8) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: tensor \"%s\": data_offsets [%zu, %zu] hold %zu bytes, shape "
                     "%s %s needs %zu",
                     e->name, e->begin, e->end, e->end - e->begin,
                     st_shape_text(e, text, sizeof text), e->dtype->name, bits / 8);
  }
  return POSE_OK;
}

static pose_status st_parse_entry(const char *name, const json_t *v, size_t data_len, st_entry *e) {
  if (name[0] == '\0') {
    return pose_fail(POSE_ERR_FORMAT, "safetensors: a tensor has an empty name");
  }
  if (!json_is_object(v)) {
    return pose_fail(POSE_ERR_FORMAT, "safetensors: tensor \"%s\": entry must be an object, got %s",
                     name, st_type_name(v));
  }
  e->name = name;
  pose_status st = st_parse_dtype(name, json_object_get(v, "dtype"), e);
  if (st == POSE_OK) st = st_parse_shape(name, json_object_get(v, "shape"), e);
  if (st == POSE_OK) st = st_parse_offsets(name, json_object_get(v, "data_offsets"), data_len, e);
  if (st == POSE_OK) st = st_check_bytes(e);
  return st;
}

/* Checks every entry; fills h->entries in header order. The arrays are sized by the number of
 * JSON members, which the (bounded, present) header itself limits. */
static pose_status st_collect_entries(st_header *h) {
  h->meta = json_object_get(h->root, ST_META);
  if (h->meta != NULL) {
    pose_status st = st_check_meta(h->meta);
    if (st != POSE_OK) return st;
  }
  size_t n = json_object_size(h->root) - (h->meta != NULL);
  if (n == 0) return POSE_OK;
  h->entries = pose_calloc(n, sizeof *h->entries);
  h->by_offset = pose_calloc(n, sizeof *h->by_offset);
  if (h->entries == NULL || h->by_offset == NULL) return POSE_ERR_OUT_OF_MEMORY;
  const char *key;
  json_t *value;
  json_object_foreach(h->root, key, value) {
    if (strcmp(key, ST_META) == 0) continue;
    st_entry *e = &h->entries[h->num_entries];
    pose_status st = st_parse_entry(key, value, h->data_len, e);
    if (st != POSE_OK) return st;
    h->by_offset[h->num_entries++] = e;
  }
  return POSE_OK;
}

static int st_cmp_offsets(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a;
  const st_entry *y = *(const st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* Sorted by offset, the tensors must tile the data buffer: from 0, no gap, no overlap, up to
 * its very end. */
static pose_status st_check_layout(st_header *h) {
  if (h->num_entries > 1) {
    qsort(h->by_offset, h->num_entries, sizeof *h->by_offset, st_cmp_offsets);
  }
  size_t pos = 0;
  const st_entry *prev = NULL;
  for (size_t i = 0; i < h->num_entries; i++) {
    const st_entry *e = h->by_offset[i];
    if (e->begin > pos && prev == NULL) {
      return pose_fail(POSE_ERR_FORMAT,
                       "safetensors: tensor \"%s\": data_offsets [%zu, %zu] leave bytes 0..%zu "
                       "unused: the first tensor must start at byte 0",
                       e->name, e->begin, e->end, e->begin);
    }
    if (e->begin > pos) {
      return pose_fail(POSE_ERR_FORMAT,
                       "safetensors: tensor \"%s\": data_offsets [%zu, %zu] leave a gap of bytes "
                       "%zu..%zu after tensor \"%s\"",
                       e->name, e->begin, e->end, pos, e->begin, prev->name);
    }
    if (e->begin < pos) {
      return pose_fail(POSE_ERR_FORMAT,
                       "safetensors: tensor \"%s\": data_offsets [%zu, %zu] overlap tensor \"%s\" "
                       "at [%zu, %zu]",
                       e->name, e->begin, e->end, prev->name, prev->begin, prev->end);
    }
    pos = e->end;
    prev = e;
  }
  if (pos == h->data_len) return POSE_OK;
  if (prev == NULL) {
    return pose_fail(POSE_ERR_FORMAT,
                     "safetensors: the data buffer has %zu bytes but the header declares no "
                     "tensors",
                     h->data_len);
  }
  return pose_fail(POSE_ERR_FORMAT,
                   "safetensors: %zu trailing bytes after the last tensor (\"%s\" ends at byte %zu "
                   "of a %zu-byte data buffer)",
                   h->data_len - pos, prev->name, pos, h->data_len);
}

/* Only after the whole file is known to be well formed: what libpose cannot represent. */
static pose_status st_check_supported(const st_header *h) {
  for (size_t i = 0; i < h->num_entries; i++) {
    const st_entry *e = &h->entries[i];
    if (e->dtype->conv == ST_NONE) {
      return pose_fail(POSE_ERR_UNSUPPORTED,
                       "safetensors: tensor \"%s\": dtype %s is not supported (libpose reads "
                       "F32, F16 and BF16)",
                       e->name, e->dtype->name);
    }
    if (e->ndim > POSE_ST_MAX_DIMS) {
      return pose_fail(POSE_ERR_UNSUPPORTED,
                       "safetensors: tensor \"%s\": %zu dimensions, libpose supports at most %d",
                       e->name, e->ndim, POSE_ST_MAX_DIMS);
    }
  }
  return POSE_OK;
}

static pose_status st_parse_header(st_header *h, const char *text, size_t len) {
  pose_status st = st_load_json(text, len, &h->root);
  if (st == POSE_OK) st = st_collect_entries(h);
  if (st == POSE_OK) st = st_check_layout(h);
  if (st == POSE_OK) st = st_check_supported(h);
  return st;
}

/* ---- parsing: the output ---------------------------------------------------------------- */

static void st_decode(const st_entry *e, const unsigned char *src, float *dst) {
  switch (e->dtype->conv) {
    case ST_F32:
      for (size_t i = 0; i < e->count; i++) dst[i] = st_bits_float(st_le32(src + 4 * i));
      break;
    case ST_F16:
      for (size_t i = 0; i < e->count; i++) dst[i] = st_f16(st_le16(src + 2 * i));
      break;
    case ST_BF16:
      for (size_t i = 0; i < e->count; i++) dst[i] = st_bf16(st_le16(src + 2 * i));
      break;
    case ST_NONE: break; /* rejected by st_check_supported */
  }
}

static pose_status st_fill_tensor(const st_entry *e, const unsigned char *data, pose_st_tensor *t) {
  t->name = pose_strdup(e->name);
  t->data = pose_alloc_floats(e->count);
  if (t->name == NULL || t->data == NULL) return POSE_ERR_OUT_OF_MEMORY;
  t->ndim = e->ndim;
  memcpy(t->shape, e->shape, sizeof t->shape);
  t->count = e->count;
  st_decode(e, data + e->begin, t->data);
  return POSE_OK;
}

static pose_status st_fill_meta(json_t *meta, pose_st_file *out) {
  const char *key;
  json_t *value;
  size_t i = 0;
  json_object_foreach(meta, key, value) {
    out->meta[i].key = pose_strdup(key);
    out->meta[i].value = pose_strdup(json_string_value(value));
    if (out->meta[i].key == NULL || out->meta[i].value == NULL) return POSE_ERR_OUT_OF_MEMORY;
    i++;
  }
  return POSE_OK;
}

/* Builds *out from a checked header. On failure the caller frees *out (every pointer in it is
 * NULL or owned). */
static pose_status st_build(const st_header *h, const unsigned char *data, pose_st_file *out) {
  size_t num_meta = h->meta != NULL ? json_object_size(h->meta) : 0;
  if (h->num_entries > 0) {
    out->tensors = pose_calloc(h->num_entries, sizeof *out->tensors);
    if (out->tensors == NULL) return POSE_ERR_OUT_OF_MEMORY;
    out->num_tensors = h->num_entries;
  }
  if (num_meta > 0) {
    out->meta = pose_calloc(num_meta, sizeof *out->meta);
    if (out->meta == NULL) return POSE_ERR_OUT_OF_MEMORY;
    out->num_meta = num_meta;
  }
  for (size_t i = 0; i < h->num_entries; i++) {
    pose_status st = st_fill_tensor(&h->entries[i], data, &out->tensors[i]);
    if (st != POSE_OK) return st;
  }
  return num_meta > 0 ? st_fill_meta(h->meta, out) : POSE_OK;
}

pose_status pose_st_parse(const void *data, size_t size, pose_st_file *out) {
  POSE_CHECK_PTR("pose_st_parse", out);
  memset(out, 0, sizeof *out);
  POSE_CHECK_PTR("pose_st_parse", data);
  const unsigned char *bytes = data;
  size_t header_len = 0;
  pose_status st = st_read_length(bytes, size, &header_len);
  if (st != POSE_OK) return st;
  st_header h;
  memset(&h, 0, sizeof h);
  h.data_len = size - 8 - header_len;
  st = st_parse_header(&h, (const char *)bytes + 8, header_len);
  if (st == POSE_OK) st = st_build(&h, bytes + 8 + header_len, out);
  st_header_release(&h);
  if (st != POSE_OK) pose_st_file_free(out);
  return st;
}

void pose_st_file_free(pose_st_file *f) {
  if (f == NULL) return;
  for (size_t i = 0; i < f->num_tensors; i++) {
    pose_free(f->tensors[i].name);
    pose_free(f->tensors[i].data);
  }
  pose_free(f->tensors);
  for (size_t i = 0; i < f->num_meta; i++) {
    pose_free(f->meta[i].key);
    pose_free(f->meta[i].value);
  }
  pose_free(f->meta);
  memset(f, 0, sizeof *f);
}

const pose_st_tensor *pose_st_find(const pose_st_file *f, const char *name) {
  if (f == NULL || name == NULL) return NULL;
  for (size_t i = 0; i < f->num_tensors; i++) {
    if (f->tensors[i].name != NULL && strcmp(f->tensors[i].name, name) == 0) {
      return &f->tensors[i];
    }
  }
  return NULL;
}

const char *pose_st_meta_get(const pose_st_file *f, const char *key) {
  if (f == NULL || key == NULL) return NULL;
  for (size_t i = 0; i < f->num_meta; i++) {
    if (f->meta[i].key != NULL && strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
  }
  return NULL;
}

/* ---- reading a file --------------------------------------------------------------------- */

static pose_status st_read_fd(int fd, const char *path, unsigned char *buf, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t got = read(fd, buf + done, size - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      return pose_fail(POSE_ERR_IO, "safetensors: cannot read \"%s\": %s", path, strerror(errno));
    }
    if (got == 0) {
      return pose_fail(POSE_ERR_IO,
                       "safetensors: \"%s\" ended after %zu of its %zu bytes (changed while "
                       "being read?)",
                       path, done, size);
    }
    done += (size_t)got;
  }
  return POSE_OK;
}

/* The whole file in a buffer from pose_malloc. */
static pose_status st_slurp_fd(int fd, const char *path, unsigned char **buf, size_t *size) {
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    return pose_fail(POSE_ERR_IO, "safetensors: cannot stat \"%s\": %s", path, strerror(errno));
  }
  if (!S_ISREG(sb.st_mode)) {
    return pose_fail(POSE_ERR_IO, "safetensors: \"%s\" is not a regular file", path);
  }
  if ((uintmax_t)sb.st_size > SIZE_MAX) {
    return pose_fail(POSE_ERR_IO, "safetensors: \"%s\" is too large to read into memory", path);
  }
  *size = (size_t)sb.st_size;
  *buf = pose_malloc(*size);
  if (*buf == NULL) return POSE_ERR_OUT_OF_MEMORY;
  pose_status st = st_read_fd(fd, path, *buf, *size);
  if (st != POSE_OK) {
    pose_free(*buf);
    *buf = NULL;
  }
  return st;
}

/* Puts the path into a parse error, which does not know it. */
static pose_status st_with_path(pose_status st, const char *path) {
  char detail[512];
  snprintf(detail, sizeof detail, "%s", pose_last_error());
  const char *rest = detail;
  if (strncmp(rest, "safetensors: ", 13) == 0) rest += 13;
  return pose_fail(st, "safetensors: \"%s\": %s", path, rest);
}

pose_status pose_st_read_file(const char *path, pose_st_file *out) {
  POSE_CHECK_PTR("pose_st_read_file", out);
  memset(out, 0, sizeof *out);
  POSE_CHECK_PTR("pose_st_read_file", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return pose_fail(POSE_ERR_IO, "safetensors: cannot open \"%s\": %s", path, strerror(errno));
  }
  unsigned char *buf = NULL;
  size_t size = 0;
  pose_status st = st_slurp_fd(fd, path, &buf, &size);
  close(fd); /* read-only: nothing to lose on a failing close */
  if (st != POSE_OK) return st;
  st = pose_st_parse(buf, size, out);
  pose_free(buf);
  return st == POSE_OK ? POSE_OK : st_with_path(st, path);
}

/* ---- writing: the header ---------------------------------------------------------------- */

/* Names go into JSON, which must be UTF-8 (readers reject anything else). Rejects overlong
 * forms, surrogates and code points past U+10FFFF, as Jansson does. */
static bool st_utf8_ok(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p != 0) {
    unsigned c = *p;
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) {
      p++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    for (size_t i = 1; i <= n; i++) { /* stops at the NUL: it is not a continuation byte */
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += n + 1;
  }
  return true;
}

static pose_status st_json_oom(const char *fn) {
  return pose_fail(POSE_ERR_OUT_OF_MEMORY, "%s: out of memory building the header", fn);
}

/* A JSON array of integers, or NULL when out of memory. */
static json_t *st_json_ints(const size_t *v, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; arr != NULL && i < n; i++) {
    if (json_array_append_new(arr, json_integer((json_int_t)v[i])) != 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  return arr;
}

static pose_status st_add_meta(const char *fn, json_t *root, const char *const *kv, size_t n) {
  json_t *meta = json_object();
  if (meta == NULL || json_object_set_new(root, ST_META, meta) != 0) return st_json_oom(fn);
  for (size_t i = 0; i < n; i++) {
    const char *key = kv[2 * i], *value = kv[2 * i + 1];
    if (key == NULL || value == NULL) {
      return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: metadata %s %zu is NULL", fn,
                       key == NULL ? "key" : "value", i);
    }
    if (!st_utf8_ok(key) || !st_utf8_ok(value)) {
      return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: metadata \"%s\" is not valid UTF-8", fn,
                       key);
    }
    if (json_object_get(meta, key) != NULL) {
      return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: metadata key \"%s\" is given twice", fn,
                       key);
    }
    if (json_object_set_new(meta, key, json_string(value)) != 0) return st_json_oom(fn);
  }
  return POSE_OK;
}

static pose_status st_check_name(const char *fn, json_t *root, const char *name, size_t i) {
  if (name == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensors[%zu].name is NULL", fn, i);
  }
  if (name[0] == '\0') {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensors[%zu].name is empty", fn, i);
  }
  if (strcmp(name, ST_META) == 0) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT,
                     "%s: tensors[%zu].name \"" ST_META "\" is reserved for metadata", fn, i);
  }
  if (!st_utf8_ok(name)) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensors[%zu].name is not valid UTF-8", fn, i);
  }
  if (json_object_get(root, name) != NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensor name \"%s\" is given twice", fn, name);
  }
  return POSE_OK;
}

/* Byte size of an output tensor, checked (and every value must fit a JSON integer). */
static pose_status st_out_bytes(const char *fn, const pose_st_out *t, size_t *bytes) {
  if (t->ndim > POSE_ST_MAX_DIMS) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" has %zu dimensions, at most %d",
                     fn, t->name, t->ndim, POSE_ST_MAX_DIMS);
  }
  size_t count = 1;
  for (size_t d = 0; d < t->ndim; d++) {
    if (!pose_mul(count, t->shape[d], &count) || (uint64_t)t->shape[d] > ST_JSON_INT_MAX) {
      return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: tensor \"%s\": shape element count overflows",
                       fn, t->name);
    }
  }
  if (!pose_mul(count, sizeof(float), bytes)) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: tensor \"%s\": byte size overflows", fn, t->name);
  }
  if (count > 0 && t->data == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\": data is NULL", fn, t->name);
  }
  return POSE_OK;
}

static pose_status st_add_tensor(const char *fn, json_t *root, const pose_st_out *t, size_t i,
                                 size_t *offset) {
  pose_status st = st_check_name(fn, root, t->name, i);
  size_t bytes = 0, range[2];
  if (st == POSE_OK) st = st_out_bytes(fn, t, &bytes);
  if (st != POSE_OK) return st;
  range[0] = *offset;
  if (!pose_add(*offset, bytes, &range[1]) || (uint64_t)range[1] > ST_JSON_INT_MAX) {
    return pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: total data size overflows at tensor \"%s\"", fn,
                     t->name);
  }
  json_t *entry = json_object();
  if (entry == NULL) return st_json_oom(fn);
  /* The _new setters take ownership of the value even when they fail (or get NULL). */
  if (json_object_set_new(entry, "dtype", json_string("F32")) != 0 ||
      json_object_set_new(entry, "shape", st_json_ints(t->shape, t->ndim)) != 0 ||
      json_object_set_new(entry, "data_offsets", st_json_ints(range, 2)) != 0) {
    json_decref(entry);
    return st_json_oom(fn);
  }
  if (json_object_set_new(root, t->name, entry) != 0) return st_json_oom(fn);
  *offset = range[1];
  return POSE_OK;
}

/* What a write produces: the 8-byte length and the space-padded header, then data_size bytes
 * of tensor data in the given order. */
typedef struct st_plan {
  unsigned char *header; /* from pose_malloc */
  size_t header_size;
  size_t data_size;
} st_plan;

static pose_status st_dump(const char *fn, json_t *root, st_plan *plan) {
  /* Jansson keeps insertion order (JSON_PRESERVE_ORDER says so to versions before 2.8). */
  size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
  size_t len = json_dumpb(root, NULL, 0, flags);
  if (len == 0) return st_json_oom(fn);
  /* Space padding to a multiple of 8, as the reference writer does, so data starts aligned. */
  size_t padded = len + (8 - len % 8) % 8;
  plan->header = pose_malloc(8 + padded);
  if (plan->header == NULL) return POSE_ERR_OUT_OF_MEMORY;
  size_t again = json_dumpb(root, (char *)plan->header + 8, len, flags);
  if (again != len) { /* the caller frees plan->header */
    /* Jansson dumps through its own allocator: 0 is its out-of-memory. */
    if (again == 0) return st_json_oom(fn);
    return pose_fail(POSE_ERR_INTERNAL, "%s: the header changed size between two dumps", fn);
  }
  memset(plan->header + 8 + len, ' ', padded - len);
  st_put_le64(plan->header, padded);
  plan->header_size = 8 + padded;
  return POSE_OK;
}

static pose_status st_build_root(const char *fn, json_t *root, const pose_st_out *tensors,
                                 size_t num_tensors, const char *const *meta_kv, size_t num_meta,
                                 size_t *data_size) {
  if (num_tensors > 0 && tensors == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: tensors is NULL but num_tensors is %zu", fn,
                     num_tensors);
  }
  if (num_meta > 0 && meta_kv == NULL) {
    return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: meta_kv is NULL but num_meta is %zu", fn,
                     num_meta);
  }
  pose_status st = num_meta > 0 ? st_add_meta(fn, root, meta_kv, num_meta) : POSE_OK;
  *data_size = 0;
  for (size_t i = 0; st == POSE_OK && i < num_tensors; i++) {
    st = st_add_tensor(fn, root, &tensors[i], i, data_size);
  }
  return st;
}

/* Checks every argument and builds the header; nothing is written anywhere yet. */
static pose_status st_plan_write(const char *fn, const pose_st_out *tensors, size_t num_tensors,
                                 const char *const *meta_kv, size_t num_meta, st_plan *plan) {
  memset(plan, 0, sizeof *plan);
  json_t *root = json_object();
  if (root == NULL) return st_json_oom(fn);
  pose_status st =
      st_build_root(fn, root, tensors, num_tensors, meta_kv, num_meta, &plan->data_size);
  if (st == POSE_OK) st = st_dump(fn, root, plan);
  json_decref(root);
  if (st != POSE_OK) {
    pose_free(plan->header);
    plan->header = NULL;
  }
  return st;
}

static size_t st_out_count(const pose_st_out *t) {
  size_t count = 1;
  for (size_t d = 0; d < t->ndim; d++) count *= t->shape[d]; /* checked by st_out_bytes */
  return count;
}

static void st_encode(const float *src, size_t count, unsigned char *dst) {
  for (size_t i = 0; i < count; i++) st_put_f32(dst + 4 * i, src[i]);
}

pose_status pose_st_write_memory(const pose_st_out *tensors, size_t num_tensors,
                                 const char *const *meta_kv, size_t num_meta, void **data,
                                 size_t *size) {
  const char *fn = "pose_st_write_memory";
  POSE_CHECK_PTR(fn, data);
  POSE_CHECK_PTR(fn, size);
  *data = NULL;
  *size = 0;
  st_plan plan;
  pose_status st = st_plan_write(fn, tensors, num_tensors, meta_kv, num_meta, &plan);
  if (st != POSE_OK) return st;
  size_t total;
  unsigned char *buf = NULL;
  if (!pose_add(plan.header_size, plan.data_size, &total)) {
    st = pose_fail(POSE_ERR_SIZE_OVERFLOW, "%s: the file size overflows size_t", fn);
  } else if ((buf = pose_malloc(total)) == NULL) {
    st = POSE_ERR_OUT_OF_MEMORY;
  } else {
    memcpy(buf, plan.header, plan.header_size);
    unsigned char *p = buf + plan.header_size;
    for (size_t i = 0; i < num_tensors; i++) {
      size_t count = st_out_count(&tensors[i]);
      st_encode(tensors[i].data, count, p);
      p += 4 * count;
    }
    *data = buf;
    *size = total;
  }
  pose_free(plan.header);
  return st;
}

/* ---- writing: the file ------------------------------------------------------------------ */

#define ST_TMP_SUFFIX ".tmp-XXXXXX"

/* Six characters that differ between calls, processes and attempts; O_EXCL makes a collision
 * harmless, this only makes it unlikely. */
static void st_random_suffix(char *out) {
  static atomic_uint_fast64_t counter;
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)getpid() << 20 ^
               (uint64_t)atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15u;
  /* splitmix64 finaliser: spreads the few changing bits over all of x */
  x = (x ^ x >> 30) * 0xBF58476D1CE4E5B9u;
  x = (x ^ x >> 27) * 0x94D049BB133111EBu;
  x ^= x >> 31;
  for (int i = 0; i < 6; i++, x /= 36) out[i] = alphabet[x % 36];
}

/* Creates "<path>.tmp-XXXXXX" beside path. Not mkstemp: that makes the file 0600, and the
 * renamed file would then be unreadable to everyone else; open(0666) lets the umask decide,
 * as for any new file. */
static pose_status st_create_temp(const char *fn, const char *path, char **tmp, int *fd) {
  size_t len = strlen(path);
  *tmp = pose_malloc(len + sizeof ST_TMP_SUFFIX);
  if (*tmp == NULL) return POSE_ERR_OUT_OF_MEMORY;
  memcpy(*tmp, path, len);
  memcpy(*tmp + len, ST_TMP_SUFFIX, sizeof ST_TMP_SUFFIX);
  for (int attempt = 0; attempt < 100; attempt++) {
    st_random_suffix(*tmp + len + sizeof ST_TMP_SUFFIX - 7);
    *fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (*fd >= 0) return POSE_OK;
    if (errno != EEXIST) break;
  }
  int err = errno;
  pose_free(*tmp);
  *tmp = NULL;
  return pose_fail(POSE_ERR_IO, "%s: cannot create a temporary file beside \"%s\": %s", fn, path,
                   strerror(err));
}

static bool st_write_all(int fd, const void *buf, size_t n) {
  const unsigned char *p = buf;
  while (n > 0) {
    ssize_t put = write(fd, p, n);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      if (put == 0) errno = EIO;
      return false;
    }
    p += put;
    n -= (size_t)put;
  }
  return true;
}

/* Encodes through a small buffer, so saving never holds a second copy of the weights. */
static bool st_write_floats(int fd, const float *data, size_t count) {
  unsigned char chunk[16384];
  const size_t per_chunk = sizeof chunk / 4;
  for (size_t i = 0; i < count; i += per_chunk) {
    size_t n = count - i < per_chunk ? count - i : per_chunk;
    st_encode(data + i, n, chunk);
    if (!st_write_all(fd, chunk, 4 * n)) return false;
  }
  return true;
}

static bool st_write_contents(int fd, const st_plan *plan, const pose_st_out *tensors,
                              size_t num_tensors) {
  if (!st_write_all(fd, plan->header, plan->header_size)) return false;
  for (size_t i = 0; i < num_tensors; i++) {
    if (!st_write_floats(fd, tensors[i].data, st_out_count(&tensors[i]))) return false;
  }
  return fsync(fd) == 0; /* the data must be on disk before the rename makes it the file */
}

/* Makes the rename itself durable. Best effort: the file is already complete and in place. */
static void st_sync_dir(char *path_copy) {
  char *slash = strrchr(path_copy, '/');
  const char *dir = ".";
  if (slash == path_copy) {
    dir = "/";
  } else if (slash != NULL) {
    *slash = '\0';
    dir = path_copy;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

static pose_status st_write_temp(const char *fn, const char *path, const st_plan *plan,
                                 const pose_st_out *tensors, size_t num_tensors) {
  char *tmp;
  int fd;
  pose_status st = st_create_temp(fn, path, &tmp, &fd);
  if (st != POSE_OK) return st;
  bool ok = st_write_contents(fd, plan, tensors, num_tensors);
  int err = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    unlink(tmp);
    st = pose_fail(POSE_ERR_IO, "%s: cannot write \"%s\": %s", fn, path, strerror(err));
  } else {
    memcpy(tmp, path, strlen(path) + 1); /* tmp holds path's length and more */
    st_sync_dir(tmp);
  }
  pose_free(tmp);
  return st;
}

pose_status pose_st_write_file(const char *path, const pose_st_out *tensors, size_t num_tensors,
                               const char *const *meta_kv, size_t num_meta) {
  const char *fn = "pose_st_write_file";
  POSE_CHECK_PTR(fn, path);
  if (path[0] == '\0') return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: path is empty", fn);
  /* Every argument is checked before the file system is touched. */
  st_plan plan;
  pose_status st = st_plan_write(fn, tensors, num_tensors, meta_kv, num_meta, &plan);
  if (st != POSE_OK) return st;
  st = st_write_temp(fn, path, &plan, tensors, num_tensors);
  pose_free(plan.header);
  return st;
}
