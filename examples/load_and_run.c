/*
 * load_and_run -- load any libpose model file, describe it, run it, optionally check parity.
 *
 *   load_and_run MODEL.safetensors [options]
 *
 *   --skip K          skip factor for a file without libpose metadata (a plain
 *                     safetensors.torch.save_file(model.state_dict(), path) file cannot say it)
 *   --mode M          full | strided | adaptive, when the file does not say (default strided)
 *   --max-seq-len N   adaptive mode's max_seq_len, when the file does not say
 *   --heads H         attention heads, when the file does not say (default 1)
 *   --batch B         input batch (default 2)
 *   --seq-len N       input length (default 12)
 *   --expect FILE     raw little-endian float32 expected output (from export_seed_models.py);
 *                     prints the max abs difference and PASS or FAIL
 *   --tol T           pass when |got - expected| <= T + T * |expected| everywhere (default 1e-5)
 *
 * The input is deterministic and built the same way by examples/export_seed_models.py, so the
 * two programs can be compared without shipping an input file:
 *   float inputs:  x[i] = ((i * 7919 + 13) % 2001 - 1000) / 1024   (exact in float32)
 *   token ids:     tokens[i] = (i * 7919 + 13) % vocab_size
 * where i is the flat row-major index.
 *
 * Exit status: 0 on success (and PASS), 1 on any libpose error or FAIL, 2 on bad usage.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pose.h>

/* Prints the failing call, its status and libpose's detail, which names the argument or tensor
 * at fault; returns 1 so that callers can `return fail(...)`. */
static int fail(const char *what, pose_status st) {
  fprintf(stderr, "load_and_run: %s failed: %s\n  %s\n", what, pose_status_string(st),
          pose_last_error());
  return 1;
}

static int usage(const char *msg) {
  if (msg != NULL) fprintf(stderr, "load_and_run: %s\n", msg);
  fprintf(stderr,
          "usage: load_and_run MODEL.safetensors [--skip K] [--mode full|strided|adaptive]\n"
          "                    [--max-seq-len N] [--heads H] [--batch B] [--seq-len N]\n"
          "                    [--expect FILE.f32] [--tol T]\n");
  return 2;
}

/* Strict positive integer: "12" yes, "12x", "-1", "0" and "" no. */
static int parse_count(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0) return 0;
  *out = (size_t)v;
  return 1;
}

static int parse_mode(const char *s, pose_attention_mode *mode) {
  for (int m = POSE_MODE_FULL; m <= POSE_MODE_ADAPTIVE; m++) {
    if (strcmp(s, pose_attention_mode_string((pose_attention_mode)m)) == 0) {
      *mode = (pose_attention_mode)m;
      return 1;
    }
  }
  return 0;
}

/* Reads a whole raw float32 file (little-endian, as x86-64 and aarch64 store it). */
static float *read_floats(const char *path, size_t *count) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "load_and_run: cannot open %s: %s\n", path, strerror(errno));
    return NULL;
  }
  float *data = NULL;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size <= 0 || size % (long)sizeof(float) != 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "load_and_run: %s is not a raw float32 file (size %ld)\n", path, size);
  } else if ((data = malloc((size_t)size)) == NULL) {
    fprintf(stderr, "load_and_run: out of memory reading %s\n", path);
  } else if (fread(data, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "load_and_run: short read on %s\n", path);
    free(data);
    data = NULL;
  }
  fclose(f);
  *count = data != NULL ? (size_t)size / sizeof(float) : 0;
  return data;
}

static void print_config(const pose_model *model, const pose_model_config *c) {
  printf("kind         %s\n", pose_model_kind_string(c->kind));
  printf("config       dim %zu, ff_dim %zu, layers %zu, heads %zu, mode %s", c->dim, c->ff_dim,
         c->num_layers, c->num_heads, pose_attention_mode_string(c->mode));
  if (c->mode == POSE_MODE_STRIDED) printf(", skip_factor %zu", c->skip_factor);
  if (c->mode == POSE_MODE_ADAPTIVE) printf(", max_seq_len %zu", c->max_seq_len);
  printf("\n");
  if (c->kind == POSE_MODEL_SUMMARIZER) printf("             vocab_size %zu\n", c->vocab_size);
  if (c->kind == POSE_MODEL_CLASSIFIER) {
    printf("             input_dim %zu, num_classes %zu\n", c->input_dim, c->num_classes);
  }
  if (c->kind == POSE_MODEL_SUMMARIZER || c->kind == POSE_MODEL_CLASSIFIER) {
    printf("             positional_encoding %s, layer_norm_eps %g\n",
           c->positional_encoding ? "on" : "off (as the seed)", (double)c->layer_norm_eps);
  }

  size_t n = pose_model_num_weights(model), params = 0;
  for (size_t i = 0; i < n; i++) {
    const float *data;
    size_t count;
    if (pose_model_get_weight(model, pose_model_weight_name(model, i), &data, &count) == POSE_OK) {
      params += count;
    }
  }
  printf("weights      %zu tensors, %zu parameters (first: %s)\n", n, params,
         n > 0 ? pose_model_weight_name(model, 0) : "-");
}

static int print_layers(const pose_model *model, size_t num_layers) {
  for (size_t l = 0; l < num_layers; l++) {
    /* As with get_config, the caller sets struct_size; pose_layer_info has no _init. */
    pose_layer_info info = {.struct_size = sizeof info};
    pose_status st = pose_model_layer_info(model, l, &info);
    if (st != POSE_OK) return fail("pose_model_layer_info", st);
    printf("layer %-6zu %s attention", l, pose_attention_mode_string(info.mode));
    if (info.mode == POSE_MODE_STRIDED) printf(" (k = %zu)", info.skip_factor);
    if (info.mode == POSE_MODE_ADAPTIVE) printf(" (max_seq_len %zu)", info.max_seq_len);
    printf(", %zu head%s, dim %zu, ff_dim %zu\n", info.num_heads, info.num_heads == 1 ? "" : "s",
           info.dim, info.ff_dim);
  }
  return 0;
}

/* Flat index -> the recipe value shared with export_seed_models.py. */
static long long recipe(size_t i) { return ((long long)i * 7919 + 13); }

int main(int argc, char **argv) {
  const char *path = NULL, *expect_path = NULL;
  size_t batch = 2, seq_len = 12;
  double tol = 1e-5;
  pose_load_options opts;
  pose_load_options_init(&opts); /* defaults for whatever the file does not say */

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = 1;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(NULL);
      return 0;
    } else if (a[0] != '-') {
      if (path != NULL) return usage("more than one model file given");
      path = a;
      continue;
    } else if (v == NULL) {
      return usage("an option is missing its value");
    } else if (strcmp(a, "--skip") == 0) {
      ok = parse_count(v, &opts.skip_factor);
    } else if (strcmp(a, "--mode") == 0) {
      ok = parse_mode(v, &opts.mode);
    } else if (strcmp(a, "--max-seq-len") == 0) {
      ok = parse_count(v, &opts.max_seq_len);
    } else if (strcmp(a, "--heads") == 0) {
      ok = parse_count(v, &opts.num_heads);
    } else if (strcmp(a, "--batch") == 0) {
      ok = parse_count(v, &batch);
    } else if (strcmp(a, "--seq-len") == 0) {
      ok = parse_count(v, &seq_len);
    } else if (strcmp(a, "--expect") == 0) {
      expect_path = v;
    } else if (strcmp(a, "--tol") == 0) {
      char *end;
      tol = strtod(v, &end);
      ok = *end == '\0' && end != v && tol >= 0.0;
    } else {
      return usage("unknown option");
    }
    if (!ok) {
      fprintf(stderr, "load_and_run: bad value \"%s\" for %s\n", v, a);
      return 2;
    }
    i++;
  }
  if (path == NULL) return usage("no model file given");

  printf("libpose %s\nfile         %s\n", pose_version_string(), path);

  /* One loader for every kind: the file's metadata (or, failing that, its tensor names) says
   * what it holds. opts only fills in what the file cannot tell. */
  pose_model *model = NULL;
  pose_status st = pose_model_load(path, &opts, &model);
  if (st != POSE_OK) {
    fail("pose_model_load", st);
    if (opts.skip_factor == 0 && strstr(pose_last_error(), "skip_factor") != NULL) {
      fprintf(stderr, "  (a file without libpose metadata needs --skip K)\n");
    }
    return 1;
  }

  int rc = 1;
  float *input = NULL, *out = NULL, *expected = NULL;
  int64_t *tokens = NULL;
  /* get_config copies up to cfg.struct_size bytes (so an older program keeps working with a
   * newer library); the caller must set it, there is no _init for a config being read. */
  pose_model_config cfg = {.struct_size = sizeof cfg};
  st = pose_model_get_config(model, &cfg);
  if (st != POSE_OK) {
    fail("pose_model_get_config", st);
    goto done;
  }
  print_config(model, &cfg);
  if (print_layers(model, cfg.num_layers) != 0) goto done;

  /* Size the output with the library rather than by hand: it knows each kind's shape and
   * checks the product for overflow. */
  size_t out_count;
  st = pose_model_output_count(model, batch, seq_len, &out_count);
  if (st != POSE_OK) {
    fail("pose_model_output_count", st);
    goto done;
  }
  out = malloc(out_count * sizeof *out);
  if (out == NULL) {
    fprintf(stderr, "load_and_run: out of memory (%zu output floats)\n", out_count);
    goto done;
  }

  size_t row; /* width of one output row: vocab, classes or dim */
  if (cfg.kind == POSE_MODEL_SUMMARIZER) {
    tokens = malloc(batch * seq_len * sizeof *tokens);
    if (tokens == NULL) goto oom;
    for (size_t i = 0; i < batch * seq_len; i++) {
      tokens[i] = (int64_t)(recipe(i) % (long long)cfg.vocab_size);
    }
    printf("input        tokens [%zu, %zu], tokens[i] = (i * 7919 + 13) %% %zu\n", batch, seq_len,
           cfg.vocab_size);
    /* lengths NULL: every sequence is seq_len long (see summarize.c for padded batches). */
    st = pose_model_forward_tokens(model, tokens, batch, seq_len, NULL, out, out_count);
    row = cfg.vocab_size;
  } else {
    size_t width = cfg.kind == POSE_MODEL_CLASSIFIER ? cfg.input_dim : cfg.dim;
    input = malloc(batch * seq_len * width * sizeof *input);
    if (input == NULL) goto oom;
    for (size_t i = 0; i < batch * seq_len * width; i++) {
      input[i] = (float)(recipe(i) % 2001 - 1000) / 1024.0f;
    }
    printf("input        floats [%zu, %zu, %zu], x[i] = ((i * 7919 + 13) %% 2001 - 1000) / 1024\n",
           batch, seq_len, width);
    st = pose_model_forward(model, input, batch, seq_len, NULL, out, out_count);
    row = cfg.kind == POSE_MODEL_CLASSIFIER ? cfg.num_classes : cfg.dim;
  }
  if (st != POSE_OK) {
    fail(cfg.kind == POSE_MODEL_SUMMARIZER ? "pose_model_forward_tokens" : "pose_model_forward",
         st);
    goto done;
  }

  if (cfg.kind == POSE_MODEL_CLASSIFIER) {
    printf("output       logits [%zu, %zu]\n", batch, row);
  } else {
    printf("output       [%zu, %zu, %zu]\n", batch, seq_len, row);
  }
  /* A few values per sequence: the first output row (position 0, or the pooled logits). */
  size_t rows_per_seq = cfg.kind == POSE_MODEL_CLASSIFIER ? 1 : seq_len;
  for (size_t b = 0; b < batch && b < 4; b++) {
    const float *r = out + b * rows_per_seq * row;
    printf("  [%zu]%s", b, cfg.kind == POSE_MODEL_CLASSIFIER ? "" : "[0]");
    for (size_t j = 0; j < row && j < 6; j++) printf(" %+.6f", (double)r[j]);
    if (row > 6) printf(" ...");
    if (cfg.kind == POSE_MODEL_SUMMARIZER || cfg.kind == POSE_MODEL_CLASSIFIER) {
      size_t best; /* the most likely token or class: top-1 of the logits */
      st = pose_top_k(r, row, 1, &best, NULL);
      if (st != POSE_OK) {
        fail("pose_top_k", st);
        goto done;
      }
      printf("  (argmax %zu)", best);
    }
    printf("\n");
  }

  if (expect_path != NULL) {
    size_t n;
    expected = read_floats(expect_path, &n);
    if (expected == NULL) goto done;
    if (n != out_count) {
      fprintf(stderr,
              "load_and_run: %s holds %zu floats, this run produced %zu: use the --batch and "
              "--seq-len the file was made with (see its .json)\n",
              expect_path, n, out_count);
      goto done;
    }
    double max_abs = 0.0, worst_excess = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
      double d = fabs((double)out[i] - (double)expected[i]);
      if (isnan(d) || d > max_abs) max_abs = isnan(d) ? INFINITY : d;
      double excess = d - (tol + tol * fabs((double)expected[i]));
      if (!(excess <= worst_excess)) {
        worst_excess = isnan(excess) ? INFINITY : excess;
        worst = i;
      }
    }
    int pass = worst_excess <= 0.0;
    printf("parity       %zu values vs %s: max |diff| = %.3g, tolerance %.0e + %.0e*|ref| -> %s\n",
           n, expect_path, max_abs, tol, tol, pass ? "PASS" : "FAIL");
    if (!pass) {
      printf("             worst at index %zu: got %.8g, expected %.8g\n", worst,
             (double)out[worst], (double)expected[worst]);
      goto done;
    }
  }
  rc = 0;
  goto done;

oom:
  fprintf(stderr, "load_and_run: out of memory building the input\n");
done:
  free(expected);
  free(tokens);
  free(input);
  free(out);
  pose_model_free(model);
  return rc;
}
