/* A program outside the libpose tree, built against an installed libpose only through its public
 * header and its pkg-config / CMake package files. It must also compile as C++ (g++ -x c++),
 * which checks pose.h's extern "C" block: without it the calls would not link.
 *
 * It prints the loaded library's version, runs one strided attention forward pass and checks the
 * result, and checks one error path (a short output buffer). Exit status 0 means all passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pose.h>

#define BATCH 2
#define SEQ_LEN 10
#define DIM 16

static int fail(const char *what, pose_status st) {
  fprintf(stderr, "consumer: %s failed: %s (%s)\n", what, pose_status_string(st),
          pose_last_error());
  return 1;
}

int main(void) {
  printf("libpose %s\n", pose_version_string());
  /* The header this program was compiled with and the library it loaded must agree. */
  if (strcmp(pose_version_string(), POSE_VERSION_STRING) != 0 ||
      pose_version_number() != POSE_VERSION_NUMBER) {
    fprintf(stderr, "consumer: header is %s but the loaded library is %s\n", POSE_VERSION_STRING,
            pose_version_string());
    return 1;
  }

  pose_attention_config cfg;
  pose_attention_config_init(&cfg);
  cfg.mode = POSE_MODE_STRIDED;
  cfg.dim = DIM;
  cfg.skip_factor = 3;
  cfg.seed = 42;

  pose_attention_module *attn = NULL;
  pose_status st = pose_attention_create(&cfg, &attn);
  if (st != POSE_OK) return fail("pose_attention_create", st);
  if (attn == NULL) {
    fprintf(stderr, "consumer: pose_attention_create returned POSE_OK and a NULL module\n");
    return 1;
  }

  const size_t count = (size_t)BATCH * SEQ_LEN * DIM;
  float *x = (float *)malloc(count * sizeof *x);
  float *y = (float *)malloc(count * sizeof *y);
  if (x == NULL || y == NULL) {
    fprintf(stderr, "consumer: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < count; i++) {
    x[i] = (float)sin(0.37 * (double)i) * 0.5f;
    y[i] = NAN;
  }

  int rc = 0;
  st = pose_attention_forward(attn, x, BATCH, SEQ_LEN, NULL, y, count);
  if (st != POSE_OK) {
    rc = fail("pose_attention_forward", st);
  } else {
    size_t nonzero = 0;
    for (size_t i = 0; i < count; i++) {
      if (!isfinite(y[i])) {
        fprintf(stderr, "consumer: output %zu is not finite (%g)\n", i, (double)y[i]);
        rc = 1;
        break;
      }
      if (y[i] != 0.0f) nonzero++;
    }
    if (rc == 0 && nonzero == 0) {
      fprintf(stderr, "consumer: every output is zero\n");
      rc = 1;
    }
    if (rc == 0) printf("forward: %zu outputs, all finite, %zu non-zero\n", count, nonzero);
  }

  /* A short output buffer is an error with a detail message, never an overflow. */
  if (rc == 0) {
    st = pose_attention_forward(attn, x, BATCH, SEQ_LEN, NULL, y, count - 1);
    if (st != POSE_ERR_BUFFER_TOO_SMALL || pose_last_error()[0] == '\0') {
      fprintf(stderr, "consumer: short buffer gave %s (%s), expected %s with a detail\n",
              pose_status_string(st), pose_last_error(),
              pose_status_string(POSE_ERR_BUFFER_TOO_SMALL));
      rc = 1;
    } else {
      printf("short buffer: %s: %s\n", pose_status_string(st), pose_last_error());
    }
  }

  pose_attention_free(attn);
  pose_attention_free(NULL);
  free(x);
  free(y);
  if (rc == 0) printf("consumer: ok\n");
  return rc;
}
