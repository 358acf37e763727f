/*
 * Tests of the safetensors reader and writer (src/io/safetensors.c): round trips, exact F16
 * and BF16 decoding, one test per rule a malformed file can break (each checks the status and
 * that the message names the tensor or field), atomic file writes, and allocation failure at
 * every allocation. A counting allocator is installed for the whole group: every test also
 * checks that nothing stays allocated.
 *
 * Hand-made headers are written with ' for " (make_file swaps them) to keep them readable.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "pose_internal.h"

/* ---- a counting allocator that can fail the Nth allocation ------------------------------ */

typedef struct counting {
  size_t live;    /* allocations not yet freed */
  size_t calls;   /* allocations attempted since the counter was reset */
  size_t fail_at; /* 1-based call that returns NULL; 0 = never */
} counting;

static counting g_alloc;
static size_t g_live_at_start;
static char g_dir[256];

static void *count_alloc(size_t size, size_t alignment, void *user) {
  counting *c = user;
  c->calls++;
  if (c->fail_at != 0 && c->calls == c->fail_at) return NULL;
  void *p = NULL;
  if (alignment < sizeof(void *)) alignment = sizeof(void *);
  if (posix_memalign(&p, alignment, size) != 0) return NULL;
  c->live++;
  return p;
}

static void count_free(void *p, void *user) {
  counting *c = user;
  c->live--;
  free(p);
}

static void fail_nth(size_t n) {
  g_alloc.calls = 0;
  g_alloc.fail_at = n;
}

/* ---- files and directories -------------------------------------------------------------- */

static void rm_tree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *ent;
    while (d != NULL && (ent = readdir(d)) != NULL) {
      if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
      char child[1024];
      snprintf(child, sizeof child, "%s/%s", path, ent->d_name);
      rm_tree(child);
    }
    if (d != NULL) closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static const char *in_dir(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", g_dir, name);
  return buf;
}

/* Entries of dir whose name contains needle. */
static size_t count_entries(const char *dir, const char *needle) {
  size_t n = 0;
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) n += strstr(ent->d_name, needle) != NULL;
  closedir(d);
  return n;
}

static bool exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

/* Whole file in a malloc'd buffer. */
static unsigned char *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  unsigned char *buf = malloc(1 << 16);
  assert_non_null(buf);
  *n = fread(buf, 1, 1 << 16, f);
  fclose(f);
  return buf;
}

/* ---- hand-made files -------------------------------------------------------------------- */

typedef struct blob {
  unsigned char *p;
  size_t n;
} blob;

static void put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A file of exactly n bytes (malloc'd, so sanitizers catch reads past it) whose length field
 * says declared, followed by head (n - 8 bytes of it; zeros past its end). */
static blob make_raw(uint64_t declared, const void *head, size_t head_len, size_t n) {
  blob b = {malloc(n == 0 ? 1 : n), n};
  assert_non_null(b.p);
  memset(b.p, 0, n);
  unsigned char len[8];
  put_le64(len, declared);
  memcpy(b.p, len, n < 8 ? n : 8);
  if (n > 8) memcpy(b.p + 8, head, head_len < n - 8 ? head_len : n - 8);
  return b;
}

/* Length field, the header (with ' turned into "), then data_len data bytes (payload, or
 * 0x11 filler when payload is NULL). */
static blob make_file(const char *header, const void *payload, size_t data_len) {
  size_t hlen = strlen(header);
  blob b = {malloc(8 + hlen + data_len), 8 + hlen + data_len};
  assert_non_null(b.p);
  put_le64(b.p, hlen);
  for (size_t i = 0; i < hlen; i++) b.p[8 + i] = header[i] == '\'' ? '"' : (unsigned char)header[i];
  if (payload != NULL) {
    memcpy(b.p + 8 + hlen, payload, data_len);
  } else {
    memset(b.p + 8 + hlen, 0x11, data_len);
  }
  return b;
}

static void assert_mentions(const char *needle) {
  const char *msg = pose_last_error();
  if (needle != NULL && strstr(msg, needle) == NULL) {
    print_error("error \"%s\" does not mention \"%s\"\n", msg, needle);
    fail();
  }
}

static void assert_zeroed(const pose_st_file *f) {
  pose_st_file zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(f, &zero, sizeof zero);
}

/* Parses b expecting want; *out must come back zeroed and the message name both needles. */
static void expect_blob_fail(blob b, pose_status want, const char *needle1, const char *needle2) {
  pose_st_file f;
  memset(&f, 0xA5, sizeof f);
  pose_status st = pose_st_parse(b.p, b.n, &f);
  if (st != want)
    print_error("status %d (%s): %s\n", st, pose_status_string(st), pose_last_error());
  assert_int_equal(st, want);
  assert_zeroed(&f);
  assert_mentions(needle1);
  assert_mentions(needle2);
  assert_int_equal(g_alloc.live, g_live_at_start);
  free(b.p);
}

static void expect_fail(const char *header, size_t data_len, pose_status want, const char *needle1,
                        const char *needle2) {
  expect_blob_fail(make_file(header, NULL, data_len), want, needle1, needle2);
}

static void expect_format(const char *header, size_t data_len, const char *needle1,
                          const char *needle2) {
  expect_fail(header, data_len, POSE_ERR_FORMAT, needle1, needle2);
}

/* Parses a file that must be valid. */
static void parse_ok(blob b, pose_st_file *f) {
  pose_status st = pose_st_parse(b.p, b.n, f);
  if (st != POSE_OK) print_error("%s\n", pose_last_error());
  assert_int_equal(st, POSE_OK);
  free(b.p);
}

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static void assert_bits(float got, uint32_t want, size_t i) {
  if (bits_of(got) != want) {
    print_error("element %zu: got bits 0x%08x (%a), want 0x%08x (%a)\n", i, bits_of(got),
                (double)got, want, (double)float_of(want));
    fail();
  }
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static int group_setup(void **state) {
  (void)state;
  pose_allocator a = {count_alloc, count_free, &g_alloc};
  if (pose_set_allocator(&a) != POSE_OK) return -1;
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/pose_st_XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
  return mkdtemp(g_dir) != NULL ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  rm_tree(g_dir);
  return pose_set_allocator(NULL) == POSE_OK ? 0 : -1;
}

static int test_setup(void **state) {
  (void)state;
  fail_nth(0);
  g_live_at_start = g_alloc.live;
  return 0;
}

/* Every test must release what it allocated. */
static int test_teardown(void **state) {
  (void)state;
  fail_nth(0);
  if (g_alloc.live == g_live_at_start) return 0;
  print_error("%zu allocations leaked\n", g_alloc.live - g_live_at_start);
  return -1;
}

/* ---- a sample set of tensors ------------------------------------------------------------ */

enum { SAMPLE_N = 5 };
static float s_matrix[6], s_vector[4], s_scalar[1];

static void sample_tensors(pose_st_out *t) {
  /* Values whose bits must survive: NaN payloads, signed zero, subnormals, extremes. */
  static const uint32_t special[6] = {0x7FC00001u, 0xFF800000u, 0x80000000u,
                                      0x00000001u, 0x7F7FFFFFu, 0x7FA00000u};
  for (int i = 0; i < 6; i++) s_matrix[i] = float_of(special[i]);
  for (int i = 0; i < 4; i++) s_vector[i] = 0.1f * (float)i - 1.0f;
  s_scalar[0] = 3.5f;
  memset(t, 0, SAMPLE_N * sizeof *t);
  t[0] = (pose_st_out){"layers.0.attn.query.weight", s_matrix, 2, {2, 3}};
  t[1] = (pose_st_out){"bias", s_vector, 1, {4}};
  t[2] = (pose_st_out){"scale", s_scalar, 0, {0}};
  t[3] = (pose_st_out){"empty", NULL, 1, {0}};
  t[4] = (pose_st_out){"empty2d", NULL, 2, {3, 0}};
}

static const char *const s_meta[] = {"kind", "encoder", "dim", "256", "note", "\xc3\xa9t\xc3\xa9"};

static void check_sample(const pose_st_file *f, const pose_st_out *t) {
  assert_int_equal(f->num_tensors, SAMPLE_N);
  for (size_t i = 0; i < SAMPLE_N; i++) {
    const pose_st_tensor *got = &f->tensors[i]; /* header order is the write order */
    assert_string_equal(got->name, t[i].name);
    assert_int_equal(got->ndim, t[i].ndim);
    size_t count = 1;
    for (size_t d = 0; d < t[i].ndim; d++) {
      assert_int_equal(got->shape[d], t[i].shape[d]);
      count *= t[i].shape[d];
    }
    assert_int_equal(got->count, count);
    assert_non_null(got->data);
    if (count > 0) assert_memory_equal(got->data, t[i].data, count * sizeof(float));
    assert_ptr_equal(pose_st_find(f, t[i].name), got);
  }
}

static blob sample_blob(void) {
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  void *data;
  size_t size;
  assert_int_equal(pose_st_write_memory(t, SAMPLE_N, s_meta, 3, &data, &size), POSE_OK);
  blob b = {malloc(size), size};
  assert_non_null(b.p);
  memcpy(b.p, data, size);
  pose_free(data);
  return b;
}

/* ---- round trips -------------------------------------------------------------------------- */

static void test_round_trip_memory(void **state) {
  (void)state;
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  void *data;
  size_t size;
  assert_int_equal(pose_st_write_memory(t, SAMPLE_N, NULL, 0, &data, &size), POSE_OK);
  const unsigned char *p = data;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | p[i];
  assert_int_equal(n % 8, 0);
  assert_int_equal(size, 8 + n + (6 + 4 + 1) * 4);
  assert_int_equal(p[8], '{');
  assert_int_equal(p[8 + n - 1] == '}' || p[8 + n - 1] == ' ', 1);
  pose_st_file f;
  assert_int_equal(pose_st_parse(data, size, &f), POSE_OK);
  pose_free(data);
  check_sample(&f, t);
  assert_int_equal(f.num_meta, 0);
  assert_null(f.meta);
  pose_st_file_free(&f);
}

/* The exact bytes, so that other readers (the Python package) see the format they expect. */
static void test_header_bytes(void **state) {
  (void)state;
  const float a[2] = {1.0f, -2.0f}, b[1] = {0.5f};
  pose_st_out t[2] = {{"a", a, 1, {2}}, {"b", b, 0, {0}}};
  const char *meta[] = {"k", "v"};
  void *data;
  size_t size;
  assert_int_equal(pose_st_write_memory(t, 2, meta, 1, &data, &size), POSE_OK);
  const char *json =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}";
  size_t len = strlen(json), padded = (len + 7) / 8 * 8;
  static const unsigned char payload[12] = {0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0, 0, 0, 0, 0x3F};
  unsigned char want[512];
  put_le64(want, padded);
  memcpy(want + 8, json, len);
  memset(want + 8 + len, ' ', padded - len);
  memcpy(want + 8 + padded, payload, sizeof payload);
  assert_int_equal(size, 8 + padded + sizeof payload);
  assert_memory_equal(data, want, size);
  pose_free(data);
}

static void test_metadata_round_trip(void **state) {
  (void)state;
  blob b = sample_blob();
  pose_st_file f;
  parse_ok(b, &f);
  assert_int_equal(f.num_meta, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_string_equal(f.meta[i].key, s_meta[2 * i]);
    assert_string_equal(f.meta[i].value, s_meta[2 * i + 1]);
  }
  assert_string_equal(pose_st_meta_get(&f, "kind"), "encoder");
  assert_string_equal(pose_st_meta_get(&f, "note"), "\xc3\xa9t\xc3\xa9");
  assert_null(pose_st_meta_get(&f, "missing"));
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  check_sample(&f, t);
  pose_st_file_free(&f);
}

static void test_round_trip_file(void **state) {
  (void)state;
  char path[512];
  in_dir(path, sizeof path, "round.safetensors");
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  assert_int_equal(pose_st_write_file(path, t, SAMPLE_N, s_meta, 3), POSE_OK);
  pose_st_file f;
  memset(&f, 0x5A, sizeof f);
  assert_int_equal(pose_st_read_file(path, &f), POSE_OK);
  check_sample(&f, t);
  assert_string_equal(pose_st_meta_get(&f, "dim"), "256");
  pose_st_file_free(&f);
  assert_int_equal(count_entries(g_dir, ".tmp-"), 0);
  /* The same bytes as the memory writer. */
  void *data;
  size_t size, disk_size;
  assert_int_equal(pose_st_write_memory(t, SAMPLE_N, s_meta, 3, &data, &size), POSE_OK);
  unsigned char *disk = read_bytes(path, &disk_size);
  assert_int_equal(disk_size, size);
  assert_memory_equal(disk, data, size);
  free(disk);
  pose_free(data);
}

static void test_find_free_null_safety(void **state) {
  (void)state;
  pose_st_file f;
  memset(&f, 0, sizeof f);
  assert_null(pose_st_find(NULL, "a"));
  assert_null(pose_st_find(&f, NULL));
  assert_null(pose_st_find(&f, "a"));
  assert_null(pose_st_meta_get(NULL, "a"));
  assert_null(pose_st_meta_get(&f, NULL));
  pose_st_file_free(NULL);
  pose_st_file_free(&f);
  pose_st_file_free(&f);
  parse_ok(sample_blob(), &f);
  assert_null(pose_st_find(&f, "nope"));
  pose_st_file_free(&f);
  assert_zeroed(&f);
  pose_st_file_free(&f); /* idempotent */
  assert_int_equal(pose_st_parse(NULL, 8, &f), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_st_parse("x", 1, NULL), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_st_read_file(NULL, &f), POSE_ERR_INVALID_ARGUMENT);
  assert_int_equal(pose_st_read_file("x", NULL), POSE_ERR_INVALID_ARGUMENT);
}

/* ---- decoding ----------------------------------------------------------------------------- */

static void check_decoded(const char *dtype, const uint16_t *in, const uint32_t *want, size_t n) {
  unsigned char payload[64];
  for (size_t i = 0; i < n; i++) {
    payload[2 * i] = (unsigned char)(in[i] & 0xFF);
    payload[2 * i + 1] = (unsigned char)(in[i] >> 8);
  }
  char header[128];
  snprintf(header, sizeof header, "{'x':{'dtype':'%s','shape':[%zu],'data_offsets':[0,%zu]}}",
           dtype, n, 2 * n);
  pose_st_file f;
  parse_ok(make_file(header, payload, 2 * n), &f);
  assert_int_equal(f.tensors[0].count, n);
  for (size_t i = 0; i < n; i++) assert_bits(f.tensors[0].data[i], want[i], i);
  pose_st_file_free(&f);
}

static void test_f16_values(void **state) {
  (void)state;
  static const uint16_t in[] = {0x0000, 0x8000, 0x3C00, 0xC000, 0x3555, 0x7BFF,
                                0xFBFF, 0x0400, 0x0001, 0x8001, 0x03FF, 0x0200,
                                0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x3BFF};
  const float want_f[] = {0.0f,         -0.0f,     1.0f,     -2.0f,    0x1.554p-2f,
                          65504.0f,     -65504.0f, 0x1p-14f, 0x1p-24f, -0x1p-24f,
                          0x1.ff8p-15f, 0x1p-15f,  INFINITY, -INFINITY};
  uint32_t want[sizeof in / sizeof in[0]];
  for (size_t i = 0; i < sizeof want_f / sizeof want_f[0]; i++) want[i] = bits_of(want_f[i]);
  want[14] = 0x7FC00000u;          /* quiet NaN */
  want[15] = 0x7F802000u;          /* signalling NaN keeps its payload */
  want[16] = 0xFFC00000u;          /* negative NaN */
  want[17] = bits_of(0x1.ffcp-1f); /* largest half below 1 */
  check_decoded("F16", in, want, sizeof in / sizeof in[0]);
}

static void test_bf16_values(void **state) {
  (void)state;
  static const uint16_t in[] = {0x3F80, 0xC000, 0x4049, 0x7F7F, 0x0080, 0x0001,
                                0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x3EAB, 0x0000};
  const float want_f[] = {1.0f,  -2.0f,    3.140625f, 0x1.fep127f, 0x1p-126f,  0x1p-133f,
                          -0.0f, INFINITY, -INFINITY, 0.0f,        0x1.56p-2f, 0.0f};
  uint32_t want[sizeof in / sizeof in[0]];
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) want[i] = bits_of(want_f[i]);
  want[9] = 0x7FC00000u;
  check_decoded("BF16", in, want, sizeof in / sizeof in[0]);
}

/* An odd header length puts every tensor at an unaligned address; sanitizers would catch a
 * cast read. Tensors are listed out of offset order. */
static void test_mixed_dtypes_unaligned(void **state) {
  (void)state;
  const char *header =
      "{'f':{'dtype':'F32','shape':[2],'data_offsets':[6,14]},"
      "'h':{'dtype':'F16','shape':[3],'data_offsets':[0,6]},"
      "'b':{'dtype':'BF16','shape':[1,1],'data_offsets':[14,16]}} ";
  assert_int_equal(strlen(header) % 2, 1);
  static const unsigned char payload[16] = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x7C, /* 1 -2 inf */
                                            0x00, 0x00, 0x80, 0x3F,             /* 1.0f */
                                            0xDB, 0x0F, 0x49, 0x40,             /* pi */
                                            0x49, 0x40};                        /* 3.140625 */
  pose_st_file f;
  parse_ok(make_file(header, payload, sizeof payload), &f);
  assert_int_equal(f.num_tensors, 3);
  assert_string_equal(f.tensors[0].name, "f");
  assert_string_equal(f.tensors[1].name, "h");
  assert_string_equal(f.tensors[2].name, "b");
  assert_bits(f.tensors[0].data[0], 0x3F800000u, 0);
  assert_bits(f.tensors[0].data[1], 0x40490FDBu, 1);
  assert_bits(f.tensors[1].data[0], bits_of(1.0f), 0);
  assert_bits(f.tensors[1].data[1], bits_of(-2.0f), 1);
  assert_bits(f.tensors[1].data[2], bits_of(INFINITY), 2);
  assert_int_equal(f.tensors[2].ndim, 2);
  assert_bits(f.tensors[2].data[0], bits_of(3.140625f), 0);
  pose_st_file_free(&f);
}

/* ---- valid corner cases ------------------------------------------------------------------- */

static void test_zero_size_and_scalar(void **state) {
  (void)state;
  const char *header =
      "{'s':{'dtype':'F32','shape':[],'data_offsets':[0,4]},"
      "'z':{'dtype':'F32','shape':[0],'data_offsets':[4,4]},"
      "'z2':{'dtype':'BF16','shape':[5,0,2],'data_offsets':[4,4]},"
      "'zend':{'dtype':'F16','shape':[0],'data_offsets':[8,8]},"
      "'v':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}";
  static const unsigned char payload[8] = {0, 0, 0x20, 0x40, 0, 0, 0x80, 0xBF}; /* 2.5, -1 */
  pose_st_file f;
  parse_ok(make_file(header, payload, sizeof payload), &f);
  const pose_st_tensor *s = pose_st_find(&f, "s");
  assert_non_null(s);
  assert_int_equal(s->ndim, 0);
  assert_int_equal(s->count, 1);
  assert_true(s->data[0] == 2.5f);
  const pose_st_tensor *z = pose_st_find(&f, "z2");
  assert_int_equal(z->ndim, 3);
  assert_int_equal(z->count, 0);
  assert_true(pose_st_find(&f, "v")->data[0] == -1.0f);
  assert_int_equal(pose_st_find(&f, "zend")->count, 0);
  pose_st_file_free(&f);
}

static void test_empty_file_set(void **state) {
  (void)state;
  static const char *const headers[] = {"{}", "{}      ", "{ }\n\t\r ", "{'__metadata__':{}}",
                                        "{'__metadata__':{'a':'b'}}"};
  for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
    pose_st_file f;
    parse_ok(make_file(headers[i], NULL, 0), &f);
    assert_int_equal(f.num_tensors, 0);
    assert_null(f.tensors);
    assert_int_equal(f.num_meta, i == 4);
    pose_st_file_free(&f);
  }
  void *data;
  size_t size;
  assert_int_equal(pose_st_write_memory(NULL, 0, NULL, 0, &data, &size), POSE_OK);
  assert_int_equal(size, 16);
  assert_memory_equal((unsigned char *)data + 8, "{}      ", 8);
  pose_st_file f;
  assert_int_equal(pose_st_parse(data, size, &f), POSE_OK);
  assert_int_equal(f.num_tensors, 0);
  pose_free(data);
  pose_st_file_free(&f);
}

/* Members the format does not define are ignored, as the reference loader ignores them. */
static void test_unknown_fields_ignored(void **state) {
  (void)state;
  pose_st_file f;
  parse_ok(make_file("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4],'extra':[1]}}", NULL, 4),
           &f);
  assert_int_equal(f.num_tensors, 1);
  pose_st_file_free(&f);
}

/* Files written by the fixture generator (which writes what Python's safetensors writes):
 * every weights file parses, and writing it back out and parsing again keeps every bit. */
#ifdef POSE_FIXTURE_DIR
static void roundtrip_parsed(const pose_st_file *f) {
  pose_st_out *t = calloc(f->num_tensors + 1, sizeof *t);
  assert_non_null(t);
  for (size_t i = 0; i < f->num_tensors; i++) {
    t[i].name = f->tensors[i].name;
    t[i].data = f->tensors[i].data;
    t[i].ndim = f->tensors[i].ndim;
    memcpy(t[i].shape, f->tensors[i].shape, sizeof t[i].shape);
  }
  void *data;
  size_t size;
  assert_int_equal(pose_st_write_memory(t, f->num_tensors, NULL, 0, &data, &size), POSE_OK);
  pose_st_file again;
  assert_int_equal(pose_st_parse(data, size, &again), POSE_OK);
  assert_int_equal(again.num_tensors, f->num_tensors);
  for (size_t i = 0; i < f->num_tensors; i++) {
    assert_string_equal(again.tensors[i].name, f->tensors[i].name);
    assert_int_equal(again.tensors[i].count, f->tensors[i].count);
    assert_memory_equal(again.tensors[i].data, f->tensors[i].data,
                        f->tensors[i].count * sizeof(float));
  }
  pose_st_file_free(&again);
  pose_free(data);
  free(t);
}
#endif

static void test_python_written_fixtures(void **state) {
  (void)state;
#ifdef POSE_FIXTURE_DIR
  DIR *d = opendir(POSE_FIXTURE_DIR);
  assert_non_null(d);
  size_t files = 0;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    if (strstr(ent->d_name, ".weights") == NULL) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", POSE_FIXTURE_DIR, ent->d_name);
    pose_st_file f;
    pose_status st = pose_st_read_file(path, &f);
    if (st != POSE_OK) print_error("%s\n", pose_last_error());
    assert_int_equal(st, POSE_OK);
    assert_true(f.num_tensors > 0);
    roundtrip_parsed(&f);
    pose_st_file_free(&f);
    files++;
  }
  closedir(d);
  assert_true(files > 10);
#else
  skip();
#endif
}

/* ---- malformed: the length field -------------------------------------------------------- */

static void test_file_too_short(void **state) {
  (void)state;
  expect_blob_fail(make_raw(0, NULL, 0, 3), POSE_ERR_FORMAT, "3 bytes", "header length");
  expect_blob_fail(make_raw(0, NULL, 0, 7), POSE_ERR_FORMAT, "7 bytes", NULL);
}

static void test_empty_input(void **state) {
  (void)state;
  expect_blob_fail(make_raw(0, NULL, 0, 0), POSE_ERR_FORMAT, "0 bytes", NULL);
  char path[512];
  in_dir(path, sizeof path, "empty.safetensors");
  write_bytes(path, "", 0);
  pose_st_file f;
  assert_int_equal(pose_st_read_file(path, &f), POSE_ERR_FORMAT);
  assert_mentions("empty.safetensors");
  assert_mentions("0 bytes");
  assert_zeroed(&f);
}

static void test_header_length_beyond_file(void **state) {
  (void)state;
  expect_blob_fail(make_raw(100, "{}", 2, 50), POSE_ERR_FORMAT, "header length 100",
                   "exceeds file size 50");
  expect_blob_fail(make_raw(3, "{}", 2, 10), POSE_ERR_FORMAT, "header length 3", "file size");
}

static void test_header_length_overflow(void **state) {
  (void)state;
  /* 8 + N wraps around to 7 and to 0: must not pass a size check computed that way. */
  expect_blob_fail(make_raw(UINT64_MAX, "{}", 2, 16), POSE_ERR_FORMAT,
                   "header length 18446744073709551615", NULL);
  expect_blob_fail(make_raw(UINT64_MAX - 7, "{}", 2, 16), POSE_ERR_FORMAT,
                   "header length 18446744073709551608", NULL);
}

static void test_header_length_bound(void **state) {
  (void)state;
  expect_blob_fail(make_raw(100000001, "{}", 2, 64), POSE_ERR_FORMAT, "header length 100000001",
                   "100000000");
}

/* ---- malformed: the JSON ---------------------------------------------------------------- */

static void test_header_not_object(void **state) {
  (void)state;
  expect_format("[1,2]", 0, "'{'", NULL);
  expect_format(" {}", 0, "'{'", NULL);
  expect_format("\"a\"", 0, "'{'", NULL);
  expect_blob_fail(make_raw(0, NULL, 0, 8), POSE_ERR_FORMAT, "'{'", NULL);
}

static void test_invalid_json(void **state) {
  (void)state;
  expect_format("{'a':", 0, "not valid JSON", NULL);
  expect_format("{'a':{'dtype':'F32',}}", 0, "not valid JSON", NULL);
  expect_format("{a:1}", 0, "not valid JSON", NULL);
  expect_format("{'a':'\\u0000'}", 0, "not valid JSON", NULL);
}

static void test_trailing_junk(void **state) {
  (void)state;
  expect_format("{} x", 0, "not valid JSON", NULL);
  expect_format("{}{}", 0, "not valid JSON", NULL);
  expect_blob_fail(make_raw(4, "{}\0\0", 4, 12), POSE_ERR_FORMAT, "not valid JSON", NULL);
}

static void test_invalid_utf8(void **state) {
  (void)state;
  expect_format("{'\xff':{'dtype':'F32','shape':[],'data_offsets':[0,4]}}", 4, "not valid JSON",
                NULL);
}

static void test_duplicate_names(void **state) {
  (void)state;
  expect_format(
      "{'w':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
      "'w':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}",
      8, "duplicate", "\"w\"");
  /* Past 20 characters Jansson's own message leaves the key out. */
  expect_format(
      "{'encoder.layers.0.attn.query.weight':{'dtype':'F32','shape':[],"
      "'data_offsets':[0,4]},'encoder.layers.0.attn.query.weight':{'dtype':'F32',"
      "'shape':[],'data_offsets':[4,8]}}",
      8, "duplicate", "\"encoder.layers.0.attn.query.weight\"");
  expect_format("{'__metadata__':{},'__metadata__':{}}", 0, "duplicate", "__metadata__");
  expect_format("{'__metadata__':{'k':'a','k':'b'}}", 0, "duplicate", "\"k\"");
}

static void test_empty_name(void **state) {
  (void)state;
  expect_format("{'':{'dtype':'F32','shape':[],'data_offsets':[0,4]}}", 4, "empty name", NULL);
}

/* ---- malformed: entries ----------------------------------------------------------------- */

static void test_missing_dtype(void **state) {
  (void)state;
  expect_format("{'ff.0.weight':{'shape':[1],'data_offsets':[0,4]}}", 4, "\"ff.0.weight\"",
                "missing \"dtype\"");
}

static void test_missing_shape(void **state) {
  (void)state;
  expect_format("{'ff.0.weight':{'dtype':'F32','data_offsets':[0,4]}}", 4, "\"ff.0.weight\"",
                "missing \"shape\"");
}

static void test_missing_data_offsets(void **state) {
  (void)state;
  expect_format("{'ff.0.weight':{'dtype':'F32','shape':[1]}}", 4, "\"ff.0.weight\"",
                "missing \"data_offsets\"");
}

static void test_wrong_types(void **state) {
  (void)state;
  expect_format("{'t':[1,2]}", 0, "\"t\"", "must be an object");
  expect_format("{'t':{'dtype':32,'shape':[1],'data_offsets':[0,4]}}", 4, "\"t\"",
                "\"dtype\" must be a string");
  expect_format("{'t':{'dtype':'F32','shape':'1','data_offsets':[0,4]}}", 4, "\"t\"",
                "\"shape\" must be an array");
  expect_format("{'t':{'dtype':'F32','shape':{},'data_offsets':[0,4]}}", 4, "\"t\"", "\"shape\"");
  expect_format("{'t':{'dtype':'F32','shape':[1.0],'data_offsets':[0,4]}}", 4, "\"t\"", "shape[0]");
  expect_format("{'t':{'dtype':'F32','shape':[1,null],'data_offsets':[0,4]}}", 4, "\"t\"",
                "shape[1]");
  expect_format("{'t':{'dtype':'F32','shape':[1],'data_offsets':{'a':0}}}", 4, "\"t\"",
                "\"data_offsets\"");
  expect_format("{'t':{'dtype':'F32','shape':[1],'data_offsets':[0,4,8]}}", 8, "\"t\"",
                "\"data_offsets\"");
  expect_format("{'t':{'dtype':'F32','shape':[1],'data_offsets':[0]}}", 4, "\"t\"",
                "\"data_offsets\"");
  expect_format("{'t':{'dtype':'F32','shape':[1],'data_offsets':['0',4]}}", 4, "\"t\"",
                "data_offsets[0]");
  expect_format("{'t':{'dtype':'F32','shape':[1],'data_offsets':[0,4.0]}}", 4, "\"t\"",
                "data_offsets[1]");
}

static void test_negative_shape(void **state) {
  (void)state;
  expect_format("{'t':{'dtype':'F32','shape':[2,-3],'data_offsets':[0,4]}}", 4, "\"t\"",
                "shape[1] must be a non-negative integer, got -3");
}

static void test_negative_offsets(void **state) {
  (void)state;
  expect_format("{'t':{'dtype':'F32','shape':[1],'data_offsets':[-4,0]}}", 4, "\"t\"",
                "data_offsets[0]");
}

/* 2^32 * 2^32 * 16 wraps to 0 in 64 bits, which would match empty offsets. */
static void test_shape_product_overflow(void **state) {
  (void)state;
  expect_format("{'t':{'dtype':'F32','shape':[4294967296,4294967296,16],'data_offsets':[0,0]}}", 0,
                "\"t\"", "overflow");
  expect_format("{'t':{'dtype':'F32','shape':[4611686018427387904],'data_offsets':[0,0]}}", 0,
                "\"t\"", "overflow");
  expect_format(
      "{'t':{'dtype':'F32','shape':[9223372036854775807,9223372036854775807,0],"
      "'data_offsets':[0,0]}}",
      0, "\"t\"", "overflow");
}

static void test_offsets_begin_after_end(void **state) {
  (void)state;
  expect_format("{'t':{'dtype':'F32','shape':[0],'data_offsets':[8,4]}}", 8, "\"t\"",
                "[8, 4] begin after they end");
}

static void test_byte_length_mismatch(void **state) {
  (void)state;
  expect_format("{'ff.0.weight':{'dtype':'F32','shape':[4,8],'data_offsets':[0,96]}}", 96, NULL,
                NULL);
  assert_string_equal(pose_last_error(),
                      "safetensors: tensor \"ff.0.weight\": data_offsets [0, 96] hold 96 bytes, "
                      "shape [4, 8] F32 needs 128");
  expect_format("{'h':{'dtype':'F16','shape':[3],'data_offsets':[0,4]}}", 4, "\"h\"",
                "shape [3] F16 needs 6");
}

static void test_gap_between_tensors(void **state) {
  (void)state;
  expect_format(
      "{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
      "'b':{'dtype':'F32','shape':[1],'data_offsets':[8,12]}}",
      12, "\"b\"", "gap of bytes 4..8 after tensor \"a\"");
}

static void test_overlapping_tensors(void **state) {
  (void)state;
  expect_format(
      "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
      "'b':{'dtype':'F32','shape':[2],'data_offsets':[4,12]}}",
      12, "\"b\"", "overlap tensor \"a\"");
  /* The same range twice. */
  expect_format(
      "{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]},"
      "'b':{'dtype':'F32','shape':[1],'data_offsets':[0,4]}}",
      4, "overlap", "[0, 4]");
  /* An empty tensor inside another one. */
  expect_format(
      "{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]},"
      "'b':{'dtype':'F32','shape':[0],'data_offsets':[4,4]}}",
      8, "\"b\"", "overlap");
}

static void test_offsets_not_from_zero(void **state) {
  (void)state;
  expect_format("{'a':{'dtype':'F32','shape':[1],'data_offsets':[4,8]}}", 8, "\"a\"",
                "start at byte 0");
}

static void test_trailing_bytes(void **state) {
  (void)state;
  expect_format("{'a':{'dtype':'F32','shape':[1],'data_offsets':[0,4]}}", 6, "2 trailing bytes",
                "\"a\"");
  expect_format("{}", 4, "4 bytes", "no tensors");
}

static void test_data_beyond_file(void **state) {
  (void)state;
  expect_format("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}}", 4, "\"a\"",
                "past the data buffer, which is 4 bytes");
}

static void test_metadata_not_string(void **state) {
  (void)state;
  expect_format("{'__metadata__':{'epoch':3}}", 0, "\"epoch\"", "an integer");
  expect_format("{'__metadata__':{'a':'x','nested':{'b':'c'}}}", 0, "\"nested\"", "an object");
  expect_format("{'__metadata__':{'n':null}}", 0, "\"n\"", "null");
}

static void test_metadata_not_object(void **state) {
  (void)state;
  expect_format("{'__metadata__':['a','b']}", 0, "__metadata__", "an array");
  expect_format("{'__metadata__':'text'}", 0, "__metadata__", "a string");
}

static void test_unsupported_dtype(void **state) {
  (void)state;
  expect_fail("{'ids':{'dtype':'I64','shape':[2],'data_offsets':[0,16]}}", 16, POSE_ERR_UNSUPPORTED,
              "\"ids\"", "I64");
  static const struct {
    const char *dtype;
    int bytes;
  } known[] = {{"F64", 8}, {"I32", 4},  {"U32", 4},     {"I16", 2},     {"U16", 2}, {"I8", 1},
               {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"U64", 8}, {"C64", 8}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    char header[128];
    snprintf(header, sizeof header, "{'t':{'dtype':'%s','shape':[3],'data_offsets':[0,%d]}}",
             known[i].dtype, 3 * known[i].bytes);
    expect_fail(header, (size_t)(3 * known[i].bytes), POSE_ERR_UNSUPPORTED, "\"t\"",
                known[i].dtype);
  }
  /* Sub-byte dtypes: whole bytes are a format rule, the dtype itself is unsupported. */
  expect_fail("{'q':{'dtype':'F4','shape':[2],'data_offsets':[0,1]}}", 1, POSE_ERR_UNSUPPORTED,
              "\"q\"", "F4");
  expect_format("{'q':{'dtype':'F4','shape':[3],'data_offsets':[0,2]}}", 2, "\"q\"",
                "not whole bytes");
}

/* A structural error wins over an unsupported dtype: the whole file is checked first. */
static void test_format_checked_before_dtype_support(void **state) {
  (void)state;
  expect_format(
      "{'ids':{'dtype':'I64','shape':[1],'data_offsets':[0,8]},"
      "'w':{'dtype':'F32','shape':[1],'data_offsets':[12,16]}}",
      16, "\"w\"", "gap");
}

static void test_unknown_dtype(void **state) {
  (void)state;
  expect_format("{'t':{'dtype':'F17','shape':[1],'data_offsets':[0,4]}}", 4, "\"t\"",
                "unknown dtype \"F17\"");
  expect_format("{'t':{'dtype':'f32','shape':[1],'data_offsets':[0,4]}}", 4, "\"t\"", "\"f32\"");
}

static void test_too_many_dims(void **state) {
  (void)state;
  expect_fail("{'t':{'dtype':'F32','shape':[1,1,1,1,1,1,1,1,1],'data_offsets':[0,4]}}", 4,
              POSE_ERR_UNSUPPORTED, "\"t\"", "9 dimensions");
  pose_st_file f;
  parse_ok(
      make_file("{'t':{'dtype':'F32','shape':[1,1,1,1,1,1,1,2],'data_offsets':[0,8]}}", NULL, 8),
      &f);
  assert_int_equal(f.tensors[0].ndim, 8);
  assert_int_equal(f.tensors[0].shape[7], 2);
  pose_st_file_free(&f);
}

/* ---- writer arguments ------------------------------------------------------------------- */

static void expect_write_fail(const pose_st_out *t, size_t n, const char *const *kv, size_t nm,
                              pose_status want, const char *needle) {
  void *data = (void *)&data;
  size_t size = 99;
  assert_int_equal(pose_st_write_memory(t, n, kv, nm, &data, &size), want);
  assert_null(data);
  assert_int_equal(size, 0);
  assert_mentions(needle);
}

static void test_write_invalid_arguments(void **state) {
  (void)state;
  const float v[2] = {1.0f, 2.0f};
  pose_st_out t[2] = {{"a", v, 1, {2}}, {"b", v, 1, {1}}};
  const pose_status bad = POSE_ERR_INVALID_ARGUMENT;
  size_t size;
  void *data;
  assert_int_equal(pose_st_write_memory(t, 2, NULL, 0, NULL, &size), bad);
  assert_int_equal(pose_st_write_memory(t, 2, NULL, 0, &data, NULL), bad);
  expect_write_fail(NULL, 1, NULL, 0, bad, "tensors is NULL");
  t[1].name = NULL;
  expect_write_fail(t, 2, NULL, 0, bad, "tensors[1].name is NULL");
  t[1].name = "";
  expect_write_fail(t, 2, NULL, 0, bad, "tensors[1].name is empty");
  t[1].name = "__metadata__";
  expect_write_fail(t, 2, NULL, 0, bad, "reserved");
  t[1].name = "a";
  expect_write_fail(t, 2, NULL, 0, bad, "\"a\" is given twice");
  t[1].name = "bad\xff";
  expect_write_fail(t, 2, NULL, 0, bad, "UTF-8");
  t[1].name = "b";
  t[1].ndim = POSE_ST_MAX_DIMS + 1;
  expect_write_fail(t, 2, NULL, 0, bad, "dimensions");
  t[1].ndim = 1;
  t[1].data = NULL;
  expect_write_fail(t, 2, NULL, 0, bad, "\"b\": data is NULL");
  t[1].shape[0] = 0; /* an empty tensor needs no data */
  assert_int_equal(pose_st_write_memory(t, 2, NULL, 0, &data, &size), POSE_OK);
  pose_free(data);
  const char *kv_null_key[] = {NULL, "v"}, *kv_null_value[] = {"k", NULL};
  const char *kv_dup[] = {"k", "v", "k", "w"}, *kv_utf8[] = {"k", "\xc3"};
  expect_write_fail(t, 2, NULL, 1, bad, "meta_kv is NULL");
  expect_write_fail(t, 2, kv_null_key, 1, bad, "key 0 is NULL");
  expect_write_fail(t, 2, kv_null_value, 1, bad, "value 0 is NULL");
  expect_write_fail(t, 2, kv_dup, 2, bad, "\"k\" is given twice");
  expect_write_fail(t, 2, kv_utf8, 1, bad, "UTF-8");
  assert_int_equal(pose_st_write_file(NULL, t, 2, NULL, 0), bad);
  assert_int_equal(pose_st_write_file("", t, 2, NULL, 0), bad);
}

/* Names in every UTF-8 length round-trip; surrogates and overlong forms are refused. */
static void test_utf8_names(void **state) {
  (void)state;
  const float v[1] = {1.5f};
  const char *good[] = {"\xc3\xa9t\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x8e\xb5"};
  for (size_t i = 0; i < 3; i++) {
    pose_st_out t = {good[i], v, 1, {1}};
    void *bytes;
    size_t n;
    assert_int_equal(pose_st_write_memory(&t, 1, NULL, 0, &bytes, &n), POSE_OK);
    pose_st_file f;
    assert_int_equal(pose_st_parse(bytes, n, &f), POSE_OK);
    assert_non_null(pose_st_find(&f, good[i]));
    pose_st_file_free(&f);
    pose_free(bytes);
  }
  const char *bad[] = {"\xed\xa0\x80", "\xe0\x80\xaf", "\xf5\x80\x80\x80", "a\xe2\x82"};
  for (size_t i = 0; i < 4; i++) {
    pose_st_out t = {bad[i], v, 1, {1}};
    expect_write_fail(&t, 1, NULL, 0, POSE_ERR_INVALID_ARGUMENT, "UTF-8");
  }
}

/* A tensor entry of each JSON kind that is not an object is named in the error. */
static void test_entry_kinds(void **state) {
  (void)state;
  expect_format("{'t':true}", 0, "\"t\"", "a boolean");
  expect_format("{'t':false}", 0, "\"t\"", "a boolean");
  expect_format("{'t':null}", 0, "\"t\"", "must be an object");
  expect_format("{'t':'x'}", 0, "\"t\"", "must be an object");
  expect_format("{'t':1.5}", 0, "\"t\"", "must be an object");
}

static void test_write_size_overflow(void **state) {
  (void)state;
  const float v[1] = {0};
  pose_st_out t[1] = {{"big", v, 2, {SIZE_MAX / 2, 4}}};
  expect_write_fail(t, 1, NULL, 0, POSE_ERR_SIZE_OVERFLOW, "\"big\"");
  t[0] = (pose_st_out){"big", v, 1, {SIZE_MAX / 2}};
  expect_write_fail(t, 1, NULL, 0, POSE_ERR_SIZE_OVERFLOW, "\"big\"");
}

/* ---- files ---------------------------------------------------------------------------------- */

static void test_read_missing_file(void **state) {
  (void)state;
  char path[512];
  in_dir(path, sizeof path, "does-not-exist.safetensors");
  pose_st_file f;
  memset(&f, 0xA5, sizeof f);
  assert_int_equal(pose_st_read_file(path, &f), POSE_ERR_IO);
  assert_zeroed(&f);
  assert_mentions(path);
  assert_mentions(strerror(ENOENT));
}

static void test_read_directory(void **state) {
  (void)state;
  pose_st_file f;
  assert_int_equal(pose_st_read_file(g_dir, &f), POSE_ERR_IO);
  assert_mentions(g_dir);
  assert_zeroed(&f);
}

static void test_read_file_error_names_path(void **state) {
  (void)state;
  char path[512];
  in_dir(path, sizeof path, "bad.safetensors");
  blob b = make_file("{'w':{'dtype':'F32','shape':[2],'data_offsets':[0,4]}}", NULL, 4);
  write_bytes(path, b.p, b.n);
  free(b.p);
  pose_st_file f;
  assert_int_equal(pose_st_read_file(path, &f), POSE_ERR_FORMAT);
  assert_mentions("bad.safetensors");
  assert_mentions("tensor \"w\"");
  assert_zeroed(&f);
}

static void test_write_into_missing_directory(void **state) {
  (void)state;
  char dir[512], path[600];
  in_dir(dir, sizeof dir, "no-such-dir");
  snprintf(path, sizeof path, "%s/out.safetensors", dir);
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  size_t before = count_entries(g_dir, "");
  assert_int_equal(pose_st_write_file(path, t, SAMPLE_N, NULL, 0), POSE_ERR_IO);
  assert_mentions(path);
  assert_false(exists(dir));
  assert_int_equal(count_entries(g_dir, ""), before);
}

static void test_write_replaces_existing(void **state) {
  (void)state;
  char path[512];
  in_dir(path, sizeof path, "replace.safetensors");
  write_bytes(path, "old contents", 12);
  const float v[3] = {1, 2, 3};
  pose_st_out t[1] = {{"new", v, 1, {3}}};
  assert_int_equal(pose_st_write_file(path, t, 1, NULL, 0), POSE_OK);
  pose_st_file f;
  assert_int_equal(pose_st_read_file(path, &f), POSE_OK);
  assert_int_equal(f.num_tensors, 1);
  assert_string_equal(f.tensors[0].name, "new");
  assert_memory_equal(f.tensors[0].data, v, sizeof v);
  pose_st_file_free(&f);
  assert_int_equal(count_entries(g_dir, ".tmp-"), 0);
}

static void assert_file_is(const char *path, const void *want, size_t n) {
  size_t got_n;
  unsigned char *got = read_bytes(path, &got_n);
  assert_int_equal(got_n, n);
  assert_memory_equal(got, want, n);
  free(got);
}

/* Failures before, during and after writing leave the file that was there untouched. */
static void test_write_failure_keeps_original(void **state) {
  (void)state;
  char dir[512], marker[600], path[512];
  in_dir(dir, sizeof dir, "a-directory");
  assert_int_equal(mkdir(dir, 0755), 0);
  snprintf(marker, sizeof marker, "%s/marker", dir);
  write_bytes(marker, "keep", 4);
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  /* The rename fails: the path is a (non-empty) directory. */
  assert_int_equal(pose_st_write_file(dir, t, SAMPLE_N, NULL, 0), POSE_ERR_IO);
  assert_mentions(dir);
  assert_file_is(marker, "keep", 4);
  assert_int_equal(count_entries(g_dir, ".tmp-"), 0);
  /* Bad arguments: nothing is touched. */
  in_dir(path, sizeof path, "good.safetensors");
  write_bytes(path, "good", 4);
  t[1].name = t[0].name;
  assert_int_equal(pose_st_write_file(path, t, SAMPLE_N, NULL, 0), POSE_ERR_INVALID_ARGUMENT);
  assert_file_is(path, "good", 4);
  /* Writing fails half way (file size limit; works even for root). */
  sample_tensors(t);
  struct rlimit old, small;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  small = old;
  small.rlim_cur = 64;
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
  pose_status st = pose_st_write_file(path, t, SAMPLE_N, s_meta, 3);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  assert_int_equal(st, POSE_ERR_IO);
  assert_mentions("good.safetensors");
  assert_file_is(path, "good", 4);
  assert_int_equal(count_entries(g_dir, ".tmp-"), 0);
}

/* New files get the usual permissions (0666 less the umask), not mkstemp's 0600. */
static void test_write_file_mode(void **state) {
  (void)state;
  char path[512];
  in_dir(path, sizeof path, "mode.safetensors");
  mode_t old = umask(027);
  pose_status st = pose_st_write_file(path, NULL, 0, NULL, 0);
  umask(old);
  assert_int_equal(st, POSE_OK);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0640);
}

/* ---- allocation failure ------------------------------------------------------------------- */

static void test_oom_parse(void **state) {
  (void)state;
  blob b = sample_blob();
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  size_t n = 1;
  for (;; n++) {
    assert_true(n < 1000);
    pose_st_file f;
    memset(&f, 0xA5, sizeof f);
    fail_nth(n);
    pose_status st = pose_st_parse(b.p, b.n, &f);
    fail_nth(0);
    if (st == POSE_OK) {
      check_sample(&f, t);
      pose_st_file_free(&f);
      break;
    }
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
    assert_int_equal(g_alloc.live, g_live_at_start);
    assert_zeroed(&f);
  }
  /* tables, per-tensor name and data, per-metadata key and value: all were failed once */
  assert_true(n > 2 + 2 * SAMPLE_N + 2 * 3);
  free(b.p);
}

static void test_oom_write_memory(void **state) {
  (void)state;
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  size_t n = 1;
  for (;; n++) {
    assert_true(n < 100);
    void *data = NULL;
    size_t size = 0;
    fail_nth(n);
    pose_status st = pose_st_write_memory(t, SAMPLE_N, s_meta, 3, &data, &size);
    fail_nth(0);
    if (st == POSE_OK) {
      pose_free(data);
      break;
    }
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
    assert_null(data);
    assert_int_equal(g_alloc.live, g_live_at_start);
  }
  assert_true(n > 1);
}

/* Jansson allocates through its own hooks (process-wide, the embedder's to set, so libpose leaves
 * them alone). Its allocation failures must not crash or leak. Writing reports them as
 * POSE_ERR_OUT_OF_MEMORY; parsing can only say what Jansson 2.14 says, and its lexer reports
 * most of its own allocation failures as syntax errors ("string or '}' expected"), so a parse
 * may also give POSE_ERR_FORMAT here. */
static size_t j_count, j_fail_at, j_live;
static void *j_malloc(size_t n) {
  if (++j_count == j_fail_at) return NULL;
  void *p = malloc(n);
  if (p != NULL) j_live++;
  return p;
}
static void j_free(void *p) {
  if (p != NULL) j_live--;
  free(p);
}

static void test_oom_inside_jansson(void **state) {
  (void)state;
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  void *bytes = NULL;
  size_t size = 0;
  assert_int_equal(pose_st_write_memory(t, SAMPLE_N, s_meta, 3, &bytes, &size), POSE_OK);
  bool parse_failed = false, write_failed = false;
  for (size_t n = 1; n < 1000; n++) {
    j_count = 0, j_fail_at = n;
    json_set_alloc_funcs(j_malloc, j_free);
    pose_st_file f;
    pose_status st = pose_st_parse(bytes, size, &f);
    void *again = NULL;
    size_t again_size = 0;
    pose_status wst = pose_st_write_memory(t, SAMPLE_N, s_meta, 3, &again, &again_size);
    json_set_alloc_funcs(malloc, free);
    if (st == POSE_OK) pose_st_file_free(&f);
    if (wst == POSE_OK) pose_free(again);
    if (st != POSE_OK) {
      assert_true(st == POSE_ERR_OUT_OF_MEMORY || st == POSE_ERR_FORMAT);
      assert_zeroed(&f);
      parse_failed = true;
    }
    assert_int_equal(j_live, 0); /* every JSON value Jansson made was released */
    if (wst != POSE_OK) {
      assert_int_equal(wst, POSE_ERR_OUT_OF_MEMORY);
      assert_null(again);
      write_failed = true;
    }
    assert_int_equal(g_alloc.live, g_live_at_start + 1); /* only `bytes` */
    if (st == POSE_OK && wst == POSE_OK && j_count < n) break;
  }
  assert_true(parse_failed && write_failed);
  pose_free(bytes);
}

static void test_oom_read_file(void **state) {
  (void)state;
  char path[512];
  in_dir(path, sizeof path, "oom-read.safetensors");
  blob b = sample_blob();
  write_bytes(path, b.p, b.n);
  free(b.p);
  size_t n = 1;
  for (;; n++) {
    assert_true(n < 1000);
    pose_st_file f;
    fail_nth(n);
    pose_status st = pose_st_read_file(path, &f);
    fail_nth(0);
    if (st == POSE_OK) {
      pose_st_file_free(&f);
      break;
    }
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
    assert_int_equal(g_alloc.live, g_live_at_start);
    assert_zeroed(&f);
  }
  assert_true(n > 2);
}

static void test_oom_write_file(void **state) {
  (void)state;
  char path[512];
  in_dir(path, sizeof path, "oom-write.safetensors");
  pose_st_out t[SAMPLE_N];
  sample_tensors(t);
  size_t n = 1;
  for (;; n++) {
    assert_true(n < 100);
    fail_nth(n);
    pose_status st = pose_st_write_file(path, t, SAMPLE_N, s_meta, 3);
    fail_nth(0);
    if (st == POSE_OK) break;
    assert_int_equal(st, POSE_ERR_OUT_OF_MEMORY);
    assert_int_equal(g_alloc.live, g_live_at_start);
    assert_false(exists(path));
    assert_int_equal(count_entries(g_dir, ".tmp-"), 0);
  }
  assert_true(n > 1);
  pose_st_file f;
  assert_int_equal(pose_st_read_file(path, &f), POSE_OK);
  check_sample(&f, t);
  pose_st_file_free(&f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_round_trip_memory),
      T(test_header_bytes),
      T(test_metadata_round_trip),
      T(test_round_trip_file),
      T(test_find_free_null_safety),
      T(test_f16_values),
      T(test_bf16_values),
      T(test_mixed_dtypes_unaligned),
      T(test_zero_size_and_scalar),
      T(test_empty_file_set),
      T(test_unknown_fields_ignored),
      T(test_python_written_fixtures),
      T(test_file_too_short),
      T(test_empty_input),
      T(test_header_length_beyond_file),
      T(test_header_length_overflow),
      T(test_header_length_bound),
      T(test_header_not_object),
      T(test_invalid_json),
      T(test_trailing_junk),
      T(test_invalid_utf8),
      T(test_duplicate_names),
      T(test_empty_name),
      T(test_missing_dtype),
      T(test_missing_shape),
      T(test_missing_data_offsets),
      T(test_wrong_types),
      T(test_negative_shape),
      T(test_negative_offsets),
      T(test_shape_product_overflow),
      T(test_offsets_begin_after_end),
      T(test_byte_length_mismatch),
      T(test_gap_between_tensors),
      T(test_overlapping_tensors),
      T(test_offsets_not_from_zero),
      T(test_trailing_bytes),
      T(test_data_beyond_file),
      T(test_metadata_not_string),
      T(test_metadata_not_object),
      T(test_unsupported_dtype),
      T(test_format_checked_before_dtype_support),
      T(test_unknown_dtype),
      T(test_too_many_dims),
      T(test_write_invalid_arguments),
      T(test_write_size_overflow),
      T(test_utf8_names),
      T(test_entry_kinds),
      T(test_read_missing_file),
      T(test_read_directory),
      T(test_read_file_error_names_path),
      T(test_write_into_missing_directory),
      T(test_write_replaces_existing),
      T(test_write_failure_keeps_original),
      T(test_write_file_mode),
      T(test_oom_parse),
      T(test_oom_write_memory),
      T(test_oom_inside_jansson),
      T(test_oom_read_file),
      T(test_oom_write_file),
  };
  return cmocka_run_group_tests_name("safetensors", tests, group_setup, group_teardown);
}
