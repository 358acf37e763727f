/* Replays a fuzz target's inputs without libFuzzer, so the ordinary test suite (any compiler,
 * optionally under sanitizers) runs the seed corpus and every crash ever found:
 *   replay_<target> FILE_OR_DIR...   (exit 0 when every input ran) */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return 1;
  }
  uint8_t *buf = NULL;
  size_t size = 0, cap = 0, n;
  uint8_t chunk[65536];
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (size + n > cap) {
      cap = (size + n) * 2;
      uint8_t *grown = realloc(buf, cap);
      if (grown == NULL) {
        free(buf);
        fclose(f);
        return 1;
      }
      buf = grown;
    }
    memcpy(buf + size, chunk, n);
    size += n;
  }
  fclose(f);
  /* An exact-size copy, so ASan sees a read past the end of the input. */
  uint8_t *exact = malloc(size ? size : 1);
  if (size) memcpy(exact, buf, size);
  LLVMFuzzerTestOneInput(exact, size);
  free(exact);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  int inputs = 0, failures = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      failures += run_file(argv[i]);
      inputs++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
      failures += run_file(path);
      inputs++;
    }
    if (d != NULL) closedir(d);
  }
  printf("replayed %d inputs, %d unreadable\n", inputs, failures);
  return failures != 0 || inputs == 0;
}
