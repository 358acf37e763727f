/*
 * attention_heatmap -- slide 12's attention visualisation, written as PNG files.
 *
 *   attention_heatmap OUT_DIR [seq_len]        (OUT_DIR: an existing directory)
 *
 * Creates a strided attention module (dim 32, k = 4, slide 3) and a full-attention module with
 * the same seeded weights, feeds both the same structured input (sine waves of the position, so
 * the maps are not uniform), gets each one's attention map with pose_attention_map and renders it
 * as a heatmap, as the seed does with seaborn:
 *
 *   OUT_DIR/attention_strided.png   OUT_DIR/attention_full.png
 *
 * y is the query position (top row = position 0), x the attended position over ALL seq_len
 * positions, so the keys strided attention skips show as light-grey gap columns. Each cell is
 * CELL x CELL pixels, coloured by a viridis-like colour map scaled to the map's largest weight.
 * seq_len defaults to 96 (images of 384 x 384 pixels) and may be 1..1024.
 *
 * The PNG writer below needs no library: it stores the pixels uncompressed (deflate "stored"
 * blocks), which any PNG reader accepts. Exits 1 if a libpose call fails, a map's rows do not
 * sum to 1, or a file cannot be written.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pose.h>

#define DIM 32
#define SKIP 4
#define CELL 4 /* pixels per map cell, in both directions */
#define MAX_SEQ_LEN 1024
#define PI 3.14159265358979323846 /* M_PI is POSIX, not C11 */

static int fail(const char *what, pose_status st) {
  fprintf(stderr, "attention_heatmap: %s failed: %s\n  %s\n", what, pose_status_string(st),
          pose_last_error());
  return 1;
}

/* ---- PNG ---------------------------------------------------------------------------------
 * A PNG file is an 8-byte signature and a list of chunks: a 4-byte big-endian data length, a
 * 4-byte type ("IHDR", "IDAT", "IEND"), the data, and a CRC-32 of type and data. IHDR gives the
 * size and pixel format (here 8-bit RGB, no interlace). IDAT holds a zlib stream of the image's
 * scanlines, each prefixed by a filter byte (0: none). A zlib stream is a 2-byte header, deflate
 * data and the Adler-32 of the uncompressed bytes; deflate's stored block type (BTYPE 00) holds
 * up to 65535 bytes verbatim after a 1-byte header and the length and its complement (16-bit
 * little-endian). IEND ends the file. */

static uint32_t crc_table[256];

/* CRC-32 as PNG (and zlib, gzip, Ethernet) define it: reflected polynomial 0xEDB88320. */
static void crc_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_table[n] = c;
  }
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

/* Writes bytes to the file and folds them into the running chunk CRC. */
typedef struct png_out {
  FILE *f;
  uint32_t crc;
  int ok;
} png_out;

static void put(png_out *o, const void *p, size_t n) {
  o->crc = crc_update(o->crc, p, n);
  if (fwrite(p, 1, n, o->f) != n) o->ok = 0;
}

static void put_be32(png_out *o, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(o, b, 4);
}

/* Starts a chunk: its length (outside the CRC) and type (the CRC starts here). */
static void chunk_begin(png_out *o, const char *type, uint32_t length) {
  put_be32(o, length);
  o->crc = 0xffffffffu;
  put(o, type, 4);
}

static void chunk_end(png_out *o) { put_be32(o, o->crc ^ 0xffffffffu); }

/* Writes an 8-bit RGB image: raw holds height scanlines of 1 filter byte + 3 * width bytes. */
static int png_write(const char *path, uint32_t width, uint32_t height, const uint8_t *raw) {
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const size_t raw_size = (size_t)height * (1 + 3 * (size_t)width);
  const size_t blocks = raw_size / 65535 + (raw_size % 65535 != 0);
  const size_t zlib_size = 2 + blocks * 5 + raw_size + 4; /* header, blocks, Adler-32 */
  if (zlib_size > 0x7fffffffu) return 0; /* a PNG chunk holds at most 2^31 - 1 bytes */
  png_out o = {fopen(path, "wb"), 0, 1};
  if (o.f == NULL) return 0;
  put(&o, signature, 8);

  /* Width, height, then bit depth 8, colour type 2 (RGB), compression 0 (deflate), filter
   * method 0, no interlace. */
  uint8_t ihdr[13] = {0, 0, 0, 0, 0, 0, 0, 0, 8, 2, 0, 0, 0};
  for (int i = 0; i < 4; i++) {
    ihdr[i] = (uint8_t)(width >> (24 - 8 * i));
    ihdr[4 + i] = (uint8_t)(height >> (24 - 8 * i));
  }
  chunk_begin(&o, "IHDR", 13);
  put(&o, ihdr, 13);
  chunk_end(&o);

  chunk_begin(&o, "IDAT", (uint32_t)zlib_size);
  /* CMF 0x78: deflate, 32 KiB window; FLG 0x01 makes CMF * 256 + FLG a multiple of 31. */
  put(&o, (const uint8_t[]){0x78, 0x01}, 2);
  uint32_t a = 1, b = 0; /* Adler-32: two sums modulo 65521 */
  for (size_t off = 0; off < raw_size; off += 65535) {
    size_t n = raw_size - off < 65535 ? raw_size - off : 65535;
    uint8_t head[5] = {off + n == raw_size ? 1 : 0, /* BFINAL on the last block, BTYPE 00 */
                       (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)~n, (uint8_t)(~n >> 8)};
    put(&o, head, 5);
    put(&o, raw + off, n);
    for (size_t i = 0; i < n; i++) {
      a = (a + raw[off + i]) % 65521;
      b = (b + a) % 65521;
    }
  }
  put_be32(&o, b << 16 | a);
  chunk_end(&o);

  chunk_begin(&o, "IEND", 0);
  chunk_end(&o);
  if (fclose(o.f) != 0) o.ok = 0;
  return o.ok;
}

/* ---- colours ------------------------------------------------------------------------------ */

/* Matplotlib's viridis sampled at 0, 1/8, ..., 1; interpolated linearly in between. */
static void viridis(double t, uint8_t rgb[3]) {
  static const uint8_t stops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                      {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                      {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
  double x = t * 8.0;
  int i = x >= 8.0 ? 7 : (int)x;
  double f = x - i;
  for (int c = 0; c < 3; c++) {
    rgb[c] = (uint8_t)lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
  }
}

/* Renders probs[seq_len, num_keys] (columns at positions[]) into scanlines of a square image of
 * seq_len * CELL pixels. Columns no query attends stay light grey. */
static uint8_t *render(const float *probs, const size_t *positions, size_t seq_len, size_t num_keys,
                       size_t *width) {
  const size_t w = seq_len * CELL, stride = 1 + 3 * w;
  uint8_t *raw = malloc(w * stride);
  if (raw == NULL) return NULL;
  float max = 0.0f;
  for (size_t i = 0; i < seq_len * num_keys; i++) max = probs[i] > max ? probs[i] : max;
  for (size_t y = 0; y < w; y++) {
    uint8_t *line = raw + y * stride;
    line[0] = 0; /* filter: none */
    memset(line + 1, 225, 3 * w);
    const float *row = probs + (y / CELL) * num_keys;
    for (size_t j = 0; j < num_keys; j++) {
      uint8_t rgb[3];
      viridis(max > 0.0f ? row[j] / max : 0.0, rgb);
      for (size_t x = positions[j] * CELL; x < (positions[j] + 1) * CELL; x++) {
        memcpy(line + 1 + 3 * x, rgb, 3);
      }
    }
  }
  *width = w;
  return raw;
}

/* ---- the maps ---------------------------------------------------------------------------- */

/* x[p, c]: a sine wave of the position with period 24, phase-shifted per channel, plus a
 * slower wave (period 96) on half the channels. Each position is then a point on two circles,
 * and the scores q_i . k_j depend on where both positions sit on them: the map shows a periodic
 * pattern rather than noise, which makes the skipped columns easy to see. */
static void structured_input(float *x, size_t seq_len) {
  for (size_t p = 0; p < seq_len; p++) {
    for (size_t c = 0; c < DIM; c++) {
      double fast = sin(2.0 * PI * (double)p / 24.0 + 0.4 * (double)c);
      double slow = c % 2 ? sin(2.0 * PI * (double)p / 96.0 + 0.9 * (double)c) : 0.0;
      x[p * DIM + c] = (float)(2.0 * fast + 1.5 * slow);
    }
  }
}

/* Gets the map of head 0, checks it, writes OUT_DIR/name. */
static int map_to_png(const pose_attention_module *attn, const float *x, size_t seq_len,
                      const char *dir, const char *name) {
  size_t num_keys, skip, width, bytes = 0;
  pose_status st = pose_attention_map_size(attn, seq_len, &num_keys);
  if (st != POSE_OK) return fail("pose_attention_map_size", st);
  st = pose_attention_skip_for(attn, seq_len, &skip);
  if (st != POSE_OK) return fail("pose_attention_skip_for", st);
  float *probs = malloc(seq_len * num_keys * sizeof *probs);
  size_t *positions = malloc(num_keys * sizeof *positions);
  uint8_t *raw = NULL;
  int rc = 1;
  if (probs == NULL || positions == NULL) {
    fprintf(stderr, "attention_heatmap: out of memory\n");
    goto done;
  }
  st = pose_attention_map(attn, x, seq_len, 0, probs, seq_len * num_keys, positions, num_keys);
  if (st != POSE_OK) {
    rc = fail("pose_attention_map", st);
    goto done;
  }
  for (size_t i = 0; i < seq_len; i++) {
    double sum = 0.0;
    for (size_t j = 0; j < num_keys; j++) sum += probs[i * num_keys + j];
    if (fabs(sum - 1.0) > 1e-4) {
      fprintf(stderr, "attention_heatmap: %s: row %zu sums to %.6f, not 1\n", name, i, sum);
      goto done;
    }
  }
  raw = render(probs, positions, seq_len, num_keys, &width);
  char path[4096];
  if (raw == NULL || snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
    fprintf(stderr, "attention_heatmap: out of memory or path too long\n");
    goto done;
  }
  if (!png_write(path, (uint32_t)width, (uint32_t)width, raw)) {
    fprintf(stderr, "attention_heatmap: cannot write %s: %s\n", path, strerror(errno));
    goto done;
  }
  FILE *f = fopen(path, "rb");
  if (f != NULL && fseek(f, 0, SEEK_END) == 0) bytes = (size_t)ftell(f);
  if (f != NULL) fclose(f);
  float max = 0.0f;
  for (size_t i = 0; i < seq_len * num_keys; i++) max = probs[i] > max ? probs[i] : max;
  printf(
      "%s: %zu x %zu pixels, %zu bytes; %zu queries x %zu attended positions (every %zu), "
      "largest weight %.3f\n",
      path, width, width, bytes, seq_len, num_keys, skip, (double)max);
  rc = 0;
done:
  free(raw);
  free(positions);
  free(probs);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: attention_heatmap OUT_DIR [seq_len]   (OUT_DIR must exist)\n");
    return 2;
  }
  size_t seq_len = 96;
  if (argc == 3) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || argv[2][0] == '-' || v < 1 || v > MAX_SEQ_LEN) {
      fprintf(stderr, "attention_heatmap: seq_len must be 1..%d, got \"%s\"\n", MAX_SEQ_LEN,
              argv[2]);
      return 2;
    }
    seq_len = v;
  }
  crc_init();

  /* The same seed and layout give the same weights: only the mode differs between the two. */
  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.dim = DIM;
  cfg.skip_factor = SKIP;
  cfg.seed = 12;
  pose_attention_module *strided = NULL, *full = NULL;
  pose_status st = pose_attention_create(&cfg, &strided);
  if (st != POSE_OK) return fail("pose_attention_create (strided)", st);
  cfg.mode = POSE_MODE_FULL;
  st = pose_attention_create(&cfg, &full);
  if (st != POSE_OK) {
    pose_attention_free(strided);
    return fail("pose_attention_create (full)", st);
  }
  float *x = malloc(seq_len * DIM * sizeof *x);
  int rc = 1;
  if (x != NULL) {
    structured_input(x, seq_len);
    rc = map_to_png(strided, x, seq_len, argv[1], "attention_strided.png");
    if (rc == 0) rc = map_to_png(full, x, seq_len, argv[1], "attention_full.png");
  } else {
    fprintf(stderr, "attention_heatmap: out of memory\n");
  }
  free(x);
  pose_attention_free(full);
  pose_attention_free(strided);
  return rc;
}
