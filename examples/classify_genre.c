/*
 * classify_genre -- the POSE music-genre classifier (seed slide 11) on a batch of clips.
 *
 *   classify_genre                          create a classifier with seeded random weights
 *   classify_genre MODEL.safetensors [--skip K]
 *                                           load one (--skip K for a file without metadata)
 *
 * The flow: get a classifier whose input is 128 mel bins per frame; build a batch of three clips
 * of different lengths (synthetic mel spectrograms -- bring your own from an audio front end);
 * pass lengths[] so each clip is pooled over its own frames only; turn logits into probabilities
 * with pose_softmax; print each clip's top-3 genres with pose_top_k.
 *
 * With the created model the weights are random, so the genres it picks mean nothing; load a
 * trained file (e.g. one exported from PyTorch) for real predictions. The example checks that
 * probabilities sum to 1 and that the shortest clip classifies the same batched as alone, and
 * exits 1 otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pose.h>

#define MEL_BINS 128
#define NUM_CLIPS 3
#define TOP_K 3

/* GTZAN's ten genres in its usual (alphabetical) label order. A trained model defines its own
 * label order; this list only names the outputs of a 10-class model. */
static const char *const genres[10] = {"blues", "classical", "country", "disco", "hiphop",
                                       "jazz",  "metal",     "pop",     "reggae", "rock"};

static int fail(const char *what, pose_status st) {
  fprintf(stderr, "classify_genre: %s failed: %s\n  %s\n", what, pose_status_string(st),
          pose_last_error());
  return 1;
}

static const char *genre_name(size_t num_classes, size_t i, char *buf, size_t size) {
  if (num_classes == 10) return genres[i];
  snprintf(buf, size, "class %zu", i);
  return buf;
}

/* Writes frames [0, frames) of a synthetic log-mel spectrogram, each row MEL_BINS wide. Three
 * textures so the clips differ visibly: a low drone, a broadband beat, a rising high melody. */
static void synth_clip(int style, size_t frames, float *mel) {
  const double pi = 3.14159265358979323846;
  for (size_t t = 0; t < frames; t++) {
    for (size_t m = 0; m < MEL_BINS; m++) {
      double bin = (double)m / MEL_BINS, v;
      if (style == 0) { /* drone: energy in the lowest bins, slowly swelling */
        v = exp(-bin * 12.0) * (1.0 + 0.3 * sin(2.0 * pi * (double)t / 40.0));
      } else if (style == 1) { /* beat: every 8th frame lights up all bins */
        v = (t % 8 == 0 ? 1.0 : 0.15) * (0.6 + 0.4 * cos(pi * bin));
      } else { /* melody: one narrow peak that climbs and wraps */
        double centre = 0.4 + 0.5 * fmod((double)t / 50.0, 1.0);
        v = exp(-(bin - centre) * (bin - centre) * 800.0);
      }
      mel[t * MEL_BINS + m] = (float)log(1e-3 + v); /* log compression, as mel front ends do */
    }
  }
}

static pose_status get_model(int argc, char **argv, pose_model **model) {
  if (argc > 1) {
    pose_load_options opts;
    pose_load_options_init(&opts);
    /* Only a file without libpose metadata needs this; 0 (a bad value too) lets the loader
     * report what is missing. */
    if (argc == 4) opts.skip_factor = strtoul(argv[3], NULL, 10);
    printf("loading %s\n", argv[1]);
    return pose_model_load(argv[1], &opts, model);
  }
  pose_model_config cfg;
  pose_status st = pose_model_config_init(&cfg, POSE_MODEL_CLASSIFIER);
  if (st != POSE_OK) return st;
  /* Slide 11 is input 128, hidden 256, 4 layers, k 2, 10 genres; a narrower model keeps this
   * instant. ff_dim is not derived from dim: the seed uses 4 * hidden_dim, so set it with dim. */
  cfg.input_dim = MEL_BINS;
  cfg.dim = 64;
  cfg.ff_dim = 4 * cfg.dim;
  cfg.num_layers = 2;
  cfg.skip_factor = 2;
  cfg.num_classes = 10;
  cfg.seed = 7;
  printf("created a classifier with random weights (seed %llu): the flow is real, the genres "
         "are not\n", (unsigned long long)cfg.seed);
  return pose_model_create(&cfg, model);
}

int main(int argc, char **argv) {
  int help = argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
  if (help || argc == 3 || argc > 4 || (argc == 4 && strcmp(argv[2], "--skip") != 0)) {
    fprintf(help ? stdout : stderr, "usage: classify_genre [MODEL.safetensors [--skip K]]\n");
    return help ? 0 : 2;
  }
  pose_model *model = NULL;
  pose_status st = get_model(argc, argv, &model);
  if (st != POSE_OK) return fail(argc > 1 ? "pose_model_load" : "pose_model_create", st);

  int rc = 1;
  float *mel = NULL, *logits = NULL, *probs = NULL;
  /* get_config copies up to cfg.struct_size bytes (so an older program keeps working with a
   * newer library); the caller must set it, there is no _init for a config being read. */
  pose_model_config cfg = {.struct_size = sizeof cfg};
  st = pose_model_get_config(model, &cfg);
  if (st != POSE_OK) {
    fail("pose_model_get_config", st);
    goto done;
  }
  if (cfg.kind != POSE_MODEL_CLASSIFIER || cfg.input_dim != MEL_BINS || cfg.num_classes < TOP_K) {
    fprintf(stderr,
            "classify_genre: need a classifier with input_dim %d and >= %d classes; this model "
            "is a %s with input_dim %zu, %zu classes\n",
            MEL_BINS, TOP_K, pose_model_kind_string(cfg.kind), cfg.input_dim, cfg.num_classes);
    goto done;
  }
  printf("classifier: %zu mel bins -> dim %zu, %zu layers, %s attention (k = %zu), %zu classes\n\n",
         cfg.input_dim, cfg.dim, cfg.num_layers, pose_attention_mode_string(cfg.mode),
         cfg.skip_factor, cfg.num_classes);

  /* ---- a padded batch of clips --------------------------------------------------------------
   * Input is [batch, seq_len, input_dim] with seq_len the longest clip. lengths[b] marks where
   * clip b ends: frames past it are never attended to and are left out of the mean pooling, so
   * they can hold anything (here: zeros from calloc). */
  static const char *const clip_names[NUM_CLIPS] = {"drone", "beat", "melody"};
  const size_t lengths[NUM_CLIPS] = {150, 96, 40};
  const size_t seq_len = 150;
  mel = calloc((size_t)NUM_CLIPS * seq_len * MEL_BINS, sizeof *mel);
  if (mel == NULL) goto oom;
  for (int c = 0; c < NUM_CLIPS; c++) synth_clip(c, lengths[c], mel + c * seq_len * MEL_BINS);

  size_t out_count; /* NUM_CLIPS * num_classes: the classifier pools over time */
  st = pose_model_output_count(model, NUM_CLIPS, seq_len, &out_count);
  if (st != POSE_OK) {
    fail("pose_model_output_count", st);
    goto done;
  }
  logits = malloc(out_count * sizeof *logits);
  probs = malloc(out_count * sizeof *probs);
  if (logits == NULL || probs == NULL) goto oom;
  st = pose_model_forward(model, mel, NUM_CLIPS, seq_len, lengths, logits, out_count);
  if (st != POSE_OK) {
    fail("pose_model_forward", st);
    goto done;
  }

  /* ---- logits -> probabilities -> top 3 ------------------------------------------------------
   * pose_softmax works row by row: one row per clip, num_classes columns. */
  const size_t K = cfg.num_classes;
  st = pose_softmax(logits, NUM_CLIPS, K, probs, out_count);
  if (st != POSE_OK) {
    fail("pose_softmax", st);
    goto done;
  }
  int ok = 1;
  for (int c = 0; c < NUM_CLIPS; c++) {
    size_t idx[TOP_K];
    float p[TOP_K];
    st = pose_top_k(probs + c * K, K, TOP_K, idx, p);
    if (st != POSE_OK) {
      fail("pose_top_k", st);
      goto done;
    }
    double sum = 0.0;
    for (size_t j = 0; j < K; j++) sum += probs[c * K + j];
    ok &= fabs(sum - 1.0) < 1e-5;
    printf("clip %d (%-6s, %3zu frames):", c, clip_names[c], lengths[c]);
    for (int j = 0; j < TOP_K; j++) {
      char buf[24];
      printf("  %-9s %5.1f%%", genre_name(K, idx[j], buf, sizeof buf), 100.0 * (double)p[j]);
    }
    printf("\n");
  }

  /* ---- check the padding contract -----------------------------------------------------------
   * The shortest clip run alone must give the logits it got in the batch. */
  const int last = NUM_CLIPS - 1;
  float alone[64];
  if (K > sizeof alone / sizeof alone[0]) {
    fprintf(stderr, "classify_genre: %zu classes is more than this check handles\n", K);
    goto done;
  }
  st = pose_model_forward(model, mel + last * seq_len * MEL_BINS, 1, lengths[last], NULL, alone,
                          K);
  if (st != POSE_OK) {
    fail("pose_model_forward (alone)", st);
    goto done;
  }
  double max_diff = 0.0;
  for (size_t j = 0; j < K; j++) {
    double d = fabs((double)alone[j] - (double)logits[last * K + j]);
    if (!(d <= max_diff)) max_diff = isnan(d) ? INFINITY : d;
    ok &= d <= 1e-5 + 1e-5 * fabs((double)alone[j]); /* float32 rounding, not equality */
  }
  printf("\ncheck: probabilities sum to 1; clip %d batched vs alone max |diff| %.3g -> %s\n",
         last, max_diff, ok ? "OK" : "FAILED");
  rc = ok ? 0 : 1;
  goto done;

oom:
  fprintf(stderr, "classify_genre: out of memory\n");
done:
  free(probs);
  free(logits);
  free(mel);
  pose_model_free(model);
  return rc;
}
