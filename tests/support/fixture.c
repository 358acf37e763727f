/*
 * fixture.c -- the tests' safetensors reader; see fixture.h. Independent of libpose's loader on
 * purpose: Jansson and stdio only.
 */
#include "fixture.h"
#include "testutil.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers --------------------------------------------------------------------------- */

static void set_err(char *err, size_t err_size, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void set_err(char *err, size_t err_size, const char *fmt, ...) {
  if (err == NULL || err_size == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_size, fmt, ap);
  va_end(ap);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}

/* IEEE half to float, exactly (every half is representable as a float). */
static float half_to_float(uint16_t h) {
  int sign = (h >> 15) & 1;
  int exp = (h >> 10) & 0x1f;
  int mant = h & 0x3ff;
  float v;
  if (exp == 0) {
    v = ldexpf((float)mant, -24); /* subnormal: mant * 2^-24 */
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = ldexpf((float)(mant | 0x400), exp - 25);
  }
  return sign ? -v : v;
}

/* bfloat16 is the top half of a float32. */
static float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

/* Little-endian loads that do not assume alignment or host byte order. */
static uint64_t load_le(const unsigned char *p, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = bytes; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

typedef enum { DT_F32, DT_F16, DT_BF16, DT_F64, DT_I64, DT_I32, DT_U8, DT_BOOL, DT_BAD } dtype_id;

static dtype_id parse_dtype(const char *s, size_t *size) {
  static const struct {
    const char *name;
    dtype_id id;
    size_t size;
  } table[] = {{"F32", DT_F32, 4}, {"F16", DT_F16, 2}, {"BF16", DT_BF16, 2}, {"F64", DT_F64, 8},
               {"I64", DT_I64, 8}, {"I32", DT_I32, 4}, {"U8", DT_U8, 1},     {"BOOL", DT_BOOL, 1}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (strcmp(s, table[i].name) == 0) {
      *size = table[i].size;
      return table[i].id;
    }
  }
  return DT_BAD;
}

static void free_tensors(fx_tensor *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(t[i].name);
    free(t[i].f32);
    free(t[i].i64);
  }
  free(t);
}

/* ---- reading --------------------------------------------------------------------------------- */

/* Reads the whole file; the fixtures are small. */
static unsigned char *read_all(const char *path, size_t *size, char *err, size_t err_size) {
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) {
    set_err(err, err_size, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  unsigned char *buf = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 65536;
      unsigned char *nb = realloc(buf, ncap);
      if (nb == NULL) {
        set_err(err, err_size, "%s: out of memory", path);
        free(buf);
        fclose(fp);
        return NULL;
      }
      buf = nb;
      cap = ncap;
    }
    size_t got = fread(buf + len, 1, cap - len, fp);
    len += got;
    if (got == 0) break;
  }
  int bad = ferror(fp);
  fclose(fp);
  if (bad) {
    set_err(err, err_size, "%s: read error", path);
    free(buf);
    return NULL;
  }
  *size = len;
  return buf;
}

static int json_size(const json_t *j, size_t *out) {
  if (!json_is_integer(j)) return 0;
  json_int_t v = json_integer_value(j);
  if (v < 0 || (unsigned long long)v > SIZE_MAX) return 0;
  *out = (size_t)v;
  return 1;
}

/* Fills *t from one header entry; data is the byte buffer after the header. */
static int parse_tensor(const char *name, const json_t *info, const unsigned char *data,
                        size_t data_size, fx_tensor *t, size_t *begin_out, char *err,
                        size_t err_size) {
  const json_t *jd = json_object_get(info, "dtype");
  const json_t *js = json_object_get(info, "shape");
  const json_t *jo = json_object_get(info, "data_offsets");
  if (!json_is_object(info) || !json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
      json_array_size(jo) != 2) {
    set_err(err, err_size, "tensor '%s': needs dtype, shape and data_offsets[2]", name);
    return 0;
  }
  size_t esize = 0;
  dtype_id id = parse_dtype(json_string_value(jd), &esize);
  if (id == DT_BAD || strlen(json_string_value(jd)) >= sizeof t->dtype) {
    set_err(err, err_size, "tensor '%s': unsupported dtype '%s'", name, json_string_value(jd));
    return 0;
  }
  strcpy(t->dtype, json_string_value(jd));
  t->ndim = json_array_size(js);
  if (t->ndim > 8) {
    set_err(err, err_size, "tensor '%s': %zu dimensions, at most 8 supported", name, t->ndim);
    return 0;
  }
  t->count = 1;
  for (size_t d = 0; d < t->ndim; d++) {
    if (!json_size(json_array_get(js, d), &t->shape[d])) {
      set_err(err, err_size, "tensor '%s': shape[%zu] is not a non-negative integer", name, d);
      return 0;
    }
    if (t->shape[d] != 0 && t->count > SIZE_MAX / t->shape[d]) {
      set_err(err, err_size, "tensor '%s': shape product overflows", name);
      return 0;
    }
    t->count *= t->shape[d];
  }
  size_t begin, end;
  if (!json_size(json_array_get(jo, 0), &begin) || !json_size(json_array_get(jo, 1), &end) ||
      begin > end || end > data_size) {
    set_err(err, err_size, "tensor '%s': data_offsets outside the %zu data bytes", name, data_size);
    return 0;
  }
  if (t->count > SIZE_MAX / esize || end - begin != t->count * esize) {
    set_err(err, err_size, "tensor '%s': %zu bytes for %zu elements of %s", name, end - begin,
            t->count, t->dtype);
    return 0;
  }
  t->name = dup_str(name);
  size_t alloc_count = t->count ? t->count : 1; /* malloc(0) may return NULL */
  const unsigned char *p = data + begin;
  if (id == DT_F32 || id == DT_F16 || id == DT_BF16 || id == DT_F64) {
    t->f32 = malloc(alloc_count * sizeof(float));
  } else {
    t->i64 = malloc(alloc_count * sizeof(int64_t));
  }
  if (t->name == NULL || (t->f32 == NULL && t->i64 == NULL)) {
    set_err(err, err_size, "tensor '%s': out of memory", name);
    return 0;
  }
  for (size_t i = 0; i < t->count; i++) {
    uint64_t raw = load_le(p + i * esize, esize);
    switch (id) {
      case DT_F32: {
        uint32_t b32 = (uint32_t)raw;
        memcpy(&t->f32[i], &b32, sizeof(float));
        break;
      }
      case DT_F64: {
        double dv;
        memcpy(&dv, &raw, sizeof dv);
        t->f32[i] = (float)dv;
        break;
      }
      case DT_F16: t->f32[i] = half_to_float((uint16_t)raw); break;
      case DT_BF16: t->f32[i] = bf16_to_float((uint16_t)raw); break;
      case DT_I64: t->i64[i] = (int64_t)raw; break;
      case DT_I32: t->i64[i] = (int32_t)(uint32_t)raw; break;
      case DT_U8:
      case DT_BOOL: t->i64[i] = (int64_t)raw; break;
      case DT_BAD: break;
    }
  }
  *begin_out = begin;
  return 1;
}

typedef struct order_entry {
  size_t begin;
  size_t index;
} order_entry;

static int cmp_order(const void *a, const void *b) {
  const order_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->index < y->index ? -1 : (x->index > y->index);
}

fx_file *fx_try_open_path(const char *path, char *err, size_t err_size) {
  char detail[512];
  size_t size = 0;
  unsigned char *buf = read_all(path, &size, err, err_size);
  if (buf == NULL) return NULL;

  fx_file *f = calloc(1, sizeof *f);
  json_t *root = NULL;
  order_entry *order = NULL;
  if (f == NULL) {
    set_err(err, err_size, "%s: out of memory", path);
    goto fail;
  }
  f->path = dup_str(path);
  if (size < 8) {
    set_err(err, err_size, "%s: %zu bytes, shorter than the 8-byte header length", path, size);
    goto fail;
  }
  uint64_t hlen = load_le(buf, 8);
  if (hlen > size - 8) {
    set_err(err, err_size, "%s: header length %llu exceeds the file (%zu bytes)", path,
            (unsigned long long)hlen, size);
    goto fail;
  }
  json_error_t jerr;
  root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL || !json_is_object(root)) {
    set_err(err, err_size, "%s: header is not a JSON object: %s", path,
            root ? "not an object" : jerr.text);
    goto fail;
  }
  const unsigned char *data = buf + 8 + hlen;
  size_t data_size = size - 8 - (size_t)hlen;

  size_t cap = json_object_size(root);
  f->t = calloc(cap ? cap : 1, sizeof *f->t);
  order = calloc(cap ? cap : 1, sizeof *order);
  if (f->t == NULL || order == NULL) {
    set_err(err, err_size, "%s: out of memory", path);
    goto fail;
  }
  const char *key;
  json_t *value;
  json_object_foreach(root, key, value) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(value)) {
        set_err(err, err_size, "%s: __metadata__ is not an object", path);
        goto fail;
      }
      const char *mk;
      json_t *mv;
      json_object_foreach(value, mk, mv) {
        if (!json_is_string(mv)) {
          set_err(err, err_size, "%s: __metadata__['%s'] is not a string", path, mk);
          goto fail;
        }
      }
      f->meta = json_incref(value);
      continue;
    }
    size_t begin = 0;
    if (!parse_tensor(key, value, data, data_size, &f->t[f->n], &begin, detail, sizeof detail)) {
      f->n++; /* the partly filled entry is freed with the rest */
      set_err(err, err_size, "%s: %s", path, detail);
      goto fail;
    }
    order[f->n].begin = begin;
    order[f->n].index = f->n;
    f->n++;
  }
  /* Present tensors in data order, the order the writer (and PyTorch's save_file) chose. */
  qsort(order, f->n, sizeof *order, cmp_order);
  fx_tensor *sorted = calloc(f->n ? f->n : 1, sizeof *sorted);
  if (sorted == NULL) {
    set_err(err, err_size, "%s: out of memory", path);
    goto fail;
  }
  for (size_t i = 0; i < f->n; i++) sorted[i] = f->t[order[i].index];
  free(f->t);
  f->t = sorted;
  free(order);
  json_decref(root);
  free(buf);
  return f;

fail:
  free(order);
  json_decref(root);
  free(buf);
  fx_close(f);
  return NULL;
}

fx_file *fx_open_path(const char *path) {
  char err[1024];
  fx_file *f = fx_try_open_path(path, err, sizeof err);
  if (f == NULL) test_failf("fixture: %s", err);
  return f;
}

fx_file *fx_open(const char *name) {
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", POSE_FIXTURE_DIR, name);
  if (n < 0 || (size_t)n >= sizeof path) test_failf("fixture: path too long for '%s'", name);
  return fx_open_path(path);
}

void fx_close(fx_file *f) {
  if (f == NULL) return;
  free_tensors(f->t, f->n);
  json_decref(f->meta);
  free(f->path);
  free(f);
}

/* ---- access ---------------------------------------------------------------------------------- */

const fx_tensor *fx_get(const fx_file *f, const char *name) {
  for (size_t i = 0; i < f->n; i++) {
    if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
  }
  return NULL;
}

const fx_tensor *fx_need(const fx_file *f, const char *name, size_t expected_count) {
  const fx_tensor *t = fx_get(f, name);
  if (t == NULL) test_failf("fixture %s: no tensor '%s'", f->path, name);
  if (expected_count != 0 && t->count != expected_count) {
    test_failf("fixture %s: tensor '%s' has %zu elements, expected %zu", f->path, name, t->count,
               expected_count);
  }
  return t;
}

const float *fx_f32(const fx_file *f, const char *name) {
  const fx_tensor *t = fx_need(f, name, 0);
  if (t->f32 == NULL)
    test_failf("fixture %s: tensor '%s' is %s, not floating", f->path, name, t->dtype);
  return t->f32;
}

const char *fx_meta(const fx_file *f, const char *key) {
  if (f->meta == NULL) return NULL;
  return json_string_value(json_object_get(f->meta, key));
}

/* Strict decimal: digits only, no sign, no spaces, no overflow. */
static int parse_size(const char *s, size_t *out) {
  if (s == NULL || *s == '\0') return 0;
  size_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    size_t digit = (size_t)(*p - '0');
    if (v > (SIZE_MAX - digit) / 10) return 0;
    v = v * 10 + digit;
  }
  *out = v;
  return 1;
}

size_t fx_meta_size(const fx_file *f, const char *key) {
  const char *s = fx_meta(f, key);
  size_t v = 0;
  if (s == NULL) test_failf("fixture %s: no metadata '%s'", f->path, key);
  if (!parse_size(s, &v))
    test_failf("fixture %s: metadata '%s' = '%s' is not a size", f->path, key, s);
  return v;
}

size_t fx_meta_size_or(const fx_file *f, const char *key, size_t fallback) {
  if (fx_meta(f, key) == NULL) return fallback;
  return fx_meta_size(f, key);
}

size_t *fx_lengths(const fx_file *f, size_t *n) {
  const fx_tensor *t = fx_get(f, "lengths");
  if (n != NULL) *n = 0;
  if (t == NULL) return NULL;
  if (t->i64 == NULL) test_failf("fixture %s: lengths is %s, not integer", f->path, t->dtype);
  size_t *out = malloc((t->count ? t->count : 1) * sizeof *out);
  if (out == NULL) test_failf("fixture %s: out of memory", f->path);
  for (size_t i = 0; i < t->count; i++) {
    if (t->i64[i] < 0) test_failf("fixture %s: lengths[%zu] is negative", f->path, i);
    out[i] = (size_t)t->i64[i];
  }
  if (n != NULL) *n = t->count;
  return out;
}

pose_weight *fx_weights(const fx_file *f, size_t *n) {
  pose_weight *w = malloc((f->n ? f->n : 1) * sizeof *w);
  if (w == NULL) test_failf("fixture %s: out of memory", f->path);
  size_t k = 0;
  for (size_t i = 0; i < f->n; i++) {
    if (f->t[i].f32 == NULL) continue;
    w[k].name = f->t[i].name;
    w[k].data = f->t[i].f32;
    w[k].count = f->t[i].count;
    k++;
  }
  *n = k;
  return w;
}
