/*
 * png_check -- validates a PNG written by examples/attention_heatmap.
 *
 *   png_check FILE WIDTH HEIGHT
 *
 * Checks the signature; that the chunks are IHDR first, IDAT, IEND last, nothing after, and every
 * chunk's CRC-32; that IHDR says WIDTH x HEIGHT, 8-bit RGB, no interlace; that the zlib stream
 * in the IDAT chunks is well formed (header, deflate stored blocks with matching length
 * complements, a final block) and decodes to exactly HEIGHT * (1 + 3 * WIDTH) bytes whose
 * Adler-32 matches the stream's; that every scanline's filter byte is valid; and that the image
 * is not one flat colour. Only the stored block type is decoded (what the example writes): a
 * compressed block is reported, not accepted. Exits 0 when all hold, 1 with the reason if not.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_path;

static int bad(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "png_check: %s: ", g_path);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 1;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bitwise CRC-32 (reflected 0xEDB88320): independent of the example's table version. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xffffffffu;
}

static uint8_t *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? 2 * cap : 1 << 16;
      uint8_t *p = realloc(buf, cap);
      if (p == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = p;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return NULL;
  }
  *size = n;
  return buf;
}

/* Decodes the zlib stream z[zn] of stored blocks into out[need]; returns 0 or reports. */
static int inflate_stored(const uint8_t *z, size_t zn, uint8_t *out, size_t need) {
  if (zn < 6) return bad("zlib stream of %zu bytes is too short", zn);
  if ((z[0] & 0x0f) != 8 || (z[0] >> 4) > 7) return bad("zlib CMF 0x%02x is not deflate", z[0]);
  if ((z[0] * 256u + z[1]) % 31 != 0) return bad("zlib header check bits are wrong");
  if (z[1] & 0x20) return bad("zlib preset dictionary is not allowed in PNG");
  size_t pos = 2, have = 0;
  int final = 0;
  while (!final) {
    if (pos + 5 > zn) return bad("deflate stream ends inside a block header at byte %zu", pos);
    final = z[pos] & 1;
    int type = (z[pos] >> 1) & 3;
    if (type != 0) return bad("deflate block type %d at byte %zu: only stored blocks", type, pos);
    size_t len = z[pos + 1] | (size_t)z[pos + 2] << 8;
    size_t nlen = z[pos + 3] | (size_t)z[pos + 4] << 8;
    if ((len ^ 0xffff) != nlen) return bad("stored block LEN %zu NLEN %zu mismatch", len, nlen);
    pos += 5;
    if (pos + len > zn) return bad("stored block of %zu bytes runs past the stream", len);
    if (have + len > need) return bad("image data longer than the %zu bytes expected", need);
    memcpy(out + have, z + pos, len);
    have += len;
    pos += len;
  }
  if (have != need) return bad("image data is %zu bytes, expected %zu", have, need);
  if (pos + 4 != zn) {
    return bad("%zu bytes after the last block, expected the 4-byte Adler-32", zn - pos);
  }
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < have; i++) {
    a = (a + out[i]) % 65521;
    b = (b + a) % 65521;
  }
  uint32_t want = be32(z + pos);
  if ((b << 16 | a) != want) return bad("Adler-32 0x%08x, stream says 0x%08x", b << 16 | a, want);
  return 0;
}

static int check(const uint8_t *f, size_t n, uint32_t width, uint32_t height) {
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n < 8 || memcmp(f, signature, 8) != 0) return bad("no PNG signature");
  uint8_t *idat = malloc(n); /* the IDAT chunks joined cannot be longer than the file */
  if (idat == NULL) return bad("out of memory");
  size_t pos = 8, idat_n = 0, chunks = 0;
  int seen_ihdr = 0, seen_iend = 0, rc = 1;
  while (pos < n && !seen_iend) {
    if (n - pos < 12) {
      bad("truncated chunk at byte %zu", pos);
      goto out;
    }
    uint32_t len = be32(f + pos);
    char type[5] = {0};
    memcpy(type, f + pos + 4, 4);
    if (len > n - pos - 12) {
      bad("chunk %s at byte %zu claims %u bytes, past the end of the file", type, pos, len);
      goto out;
    }
    const uint8_t *data = f + pos + 8;
    uint32_t crc = crc32_of(f + pos + 4, 4 + (size_t)len), stored = be32(data + len);
    if (crc != stored) {
      bad("chunk %s at byte %zu: CRC 0x%08x, stored 0x%08x", type, pos, crc, stored);
      goto out;
    }
    if (chunks == 0 && strcmp(type, "IHDR") != 0) {
      bad("first chunk is %s, not IHDR", type);
      goto out;
    }
    if (strcmp(type, "IHDR") == 0) {
      if (seen_ihdr || len != 13) {
        bad("IHDR repeated or of %u bytes", len);
        goto out;
      }
      seen_ihdr = 1;
      uint32_t w = be32(data), h = be32(data + 4);
      if (w != width || h != height) {
        bad("image is %u x %u, expected %u x %u", w, h, width, height);
        goto out;
      }
      if (data[8] != 8 || data[9] != 2 || data[10] != 0 || data[11] != 0 || data[12] != 0) {
        bad("IHDR depth %u colour type %u compression %u filter %u interlace %u, expected 8 2 0 0 "
            "0",
            data[8], data[9], data[10], data[11], data[12]);
        goto out;
      }
    } else if (strcmp(type, "IDAT") == 0) {
      memcpy(idat + idat_n, data, len);
      idat_n += len;
    } else if (strcmp(type, "IEND") == 0) {
      if (len != 0) {
        bad("IEND has %u data bytes", len);
        goto out;
      }
      seen_iend = 1;
    } else if (!(type[0] & 0x20)) {
      bad("unknown critical chunk %s", type);
      goto out;
    }
    pos += 12 + (size_t)len;
    chunks++;
  }
  if (!seen_iend) {
    bad("no IEND chunk");
    goto out;
  }
  if (pos != n) {
    bad("%zu bytes after IEND", n - pos);
    goto out;
  }
  const size_t stride = 1 + 3 * (size_t)width, need = (size_t)height * stride;
  uint8_t *pixels = malloc(need ? need : 1);
  if (pixels == NULL) {
    bad("out of memory");
    goto out;
  }
  if (inflate_stored(idat, idat_n, pixels, need) == 0) {
    rc = 0;
    for (size_t y = 0; y < height && rc == 0; y++) {
      if (pixels[y * stride] > 4) {
        rc = bad("scanline %zu has filter type %u", y, pixels[y * stride]);
      }
    }
    /* A flat image would mean the heatmap shows nothing (filter 0 makes bytes = pixels). */
    int flat = 1;
    for (size_t y = 0; y < height && flat; y++) {
      flat = memcmp(pixels + y * stride + 1, pixels + 1, 3 * (size_t)width) == 0;
      for (size_t x = 1; x < width && flat; x++) {
        flat = memcmp(pixels + y * stride + 1 + 3 * x, pixels + 1, 3) == 0;
      }
    }
    if (rc == 0 && flat) rc = bad("every pixel has the same colour");
  }
  free(pixels);
out:
  free(idat);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: png_check FILE WIDTH HEIGHT\n");
    return 2;
  }
  g_path = argv[1];
  char *end1, *end2;
  unsigned long w = strtoul(argv[2], &end1, 10), h = strtoul(argv[3], &end2, 10);
  if (*end1 != '\0' || *end2 != '\0' || w == 0 || h == 0 || w > 1u << 20 || h > 1u << 20) {
    fprintf(stderr, "png_check: WIDTH and HEIGHT must be 1..1048576\n");
    return 2;
  }
  size_t n;
  uint8_t *f = read_all(argv[1], &n);
  if (f == NULL) return bad("cannot read the file");
  int rc = check(f, n, (uint32_t)w, (uint32_t)h);
  free(f);
  if (rc == 0) printf("png_check: %s: OK, %lu x %lu RGB, %zu bytes\n", argv[1], w, h, n);
  return rc;
}
