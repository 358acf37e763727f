/*
 * summarize -- the POSE summarizer (seed slide 10) from text to an extractive-style summary.
 *
 *   summarize                          create a small summarizer with seeded random weights
 *   summarize MODEL.safetensors [--skip K]
 *                                      load one (--skip K for a file without libpose metadata)
 *
 * What it shows, in the order a program does it:
 *   1. getting a summarizer: pose_model_create from a config, or pose_model_load from a file;
 *   2. turning text into token ids (a toy tokenizer: words hashed into the vocabulary);
 *   3. batching two documents of different lengths: pad to the longest and pass lengths[], so
 *      the short one is computed exactly as if it ran alone;
 *   4. sizing the output with pose_model_output_count, running pose_model_forward_tokens;
 *   5. reading the [batch, seq_len, vocab_size] logits with pose_top_k: the top tokens at each
 *      position, and a per-sentence score used to pick "summary" sentences.
 *
 * About the output: with the created model the weights are random, so the predicted tokens and
 * the chosen sentences mean nothing; the flow is the point. The seed's POSESummarizer is a
 * per-token language-model head, not a trained summarizer -- give a trained file to get
 * meaningful scores.
 *
 * It also checks the batching contract it relies on (padded rows are zero; the short document
 * gives the same logits batched as alone) and exits 1 if either fails.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pose.h>

#define MAX_TOKENS 64
#define MAX_SENTENCES 8
#define MAX_WORD 24
#define TOP_K 3

static int fail(const char *what, pose_status st) {
  fprintf(stderr, "summarize: %s failed: %s\n  %s\n", what, pose_status_string(st),
          pose_last_error());
  return 1;
}

/* ---- a toy tokenizer -------------------------------------------------------------------------
 * Real systems use a trained subword tokenizer whose vocabulary matches the model's embedding.
 * Here every lower-cased word is hashed (FNV-1a) into 0..vocab_size-1 -- the "hashing trick" --
 * so any vocabulary size works, including a loaded model's. Collisions are possible and harmless
 * for a demonstration. Ids are turned back into words by looking them up among the words seen. */

typedef struct document {
  const char *text;
  int64_t tokens[MAX_TOKENS];
  char words[MAX_TOKENS][MAX_WORD];
  size_t length;                     /* tokens */
  size_t sentence_end[MAX_SENTENCES]; /* token index one past each sentence's last word */
  size_t num_sentences;
} document;

static int64_t word_id(const char *word, size_t vocab_size) {
  uint32_t h = 2166136261u;
  for (const char *p = word; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
  return (int64_t)(h % vocab_size);
}

/* Closes the current sentence if it has any words; 0 when there is no room for it. */
static int end_sentence(document *d) {
  size_t start = d->num_sentences > 0 ? d->sentence_end[d->num_sentences - 1] : 0;
  if (d->length == start) return 1; /* "..." or "?!" ends nothing new */
  if (d->num_sentences == MAX_SENTENCES) return 0;
  d->sentence_end[d->num_sentences++] = d->length;
  return 1;
}

/* Splits on anything that is not a letter or digit; '.', '!' and '?' end a sentence. */
static int tokenize(document *d, size_t vocab_size) {
  d->length = d->num_sentences = 0;
  for (const char *p = d->text; *p;) {
    if (isalnum((unsigned char)*p)) {
      if (d->length == MAX_TOKENS) return 0;
      char *w = d->words[d->length];
      size_t n = 0;
      for (; isalnum((unsigned char)*p); p++) {
        if (n + 1 < MAX_WORD) w[n++] = (char)tolower((unsigned char)*p);
      }
      w[n] = '\0';
      d->tokens[d->length++] = word_id(w, vocab_size);
    } else {
      if ((*p == '.' || *p == '!' || *p == '?') && !end_sentence(d)) return 0;
      p++;
    }
  }
  /* Text without a final full stop still ends its last sentence. */
  return end_sentence(d) && d->length > 0;
}

/* The first word seen in either document with this id, or NULL. */
static const char *id_to_word(const document *docs, size_t ndocs, int64_t id) {
  for (size_t b = 0; b < ndocs; b++) {
    for (size_t t = 0; t < docs[b].length; t++) {
      if (docs[b].tokens[t] == id) return docs[b].words[t];
    }
  }
  return NULL;
}

static void print_token(const document *docs, size_t ndocs, size_t id) {
  const char *w = id_to_word(docs, ndocs, (int64_t)id);
  if (w != NULL) {
    printf(" %-10s", w);
  } else {
    char buf[24];
    snprintf(buf, sizeof buf, "#%zu", id); /* an id none of our words hashes to */
    printf(" %-10s", buf);
  }
}

/* Prints tokens [begin, end) of a document as text. */
static void print_span(const document *d, size_t begin, size_t end) {
  for (size_t t = begin; t < end; t++) printf("%s%s", t > begin ? " " : "", d->words[t]);
}

/* ---- the model ------------------------------------------------------------------------------ */

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
  pose_status st = pose_model_config_init(&cfg, POSE_MODEL_SUMMARIZER);
  if (st != POSE_OK) return st;
  /* The seed's example is vocab 30000, dim 256, 6 layers (slide 10); a smaller model keeps the
   * example instant. ff_dim is not derived from dim: the seed's POSESummarizer uses 4 * dim, so
   * set it with dim, or the weights will not match a PyTorch model of the same width. */
  cfg.vocab_size = 1000;
  cfg.dim = 64;
  cfg.ff_dim = 4 * cfg.dim;
  cfg.num_layers = 2;
  cfg.skip_factor = 2;
  cfg.seed = 2024; /* same seed, same weights on every machine */
  printf("created a summarizer with random weights (seed %llu): the flow is real, the "
         "predictions are not\n", (unsigned long long)cfg.seed);
  return pose_model_create(&cfg, model);
}

int main(int argc, char **argv) {
  int help = argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
  if (help || argc == 3 || argc > 4 || (argc == 4 && strcmp(argv[2], "--skip") != 0)) {
    fprintf(help ? stdout : stderr, "usage: summarize [MODEL.safetensors [--skip K]]\n");
    return help ? 0 : 2;
  }
  pose_model *model = NULL;
  pose_status st = get_model(argc, argv, &model);
  if (st != POSE_OK) return fail(argc > 1 ? "pose_model_load" : "pose_model_create", st);

  int rc = 1;
  float *logits = NULL, *alone = NULL;
  int64_t *batch_tokens = NULL;
  /* get_config copies up to cfg.struct_size bytes (so an older program keeps working with a
   * newer library); the caller must set it, there is no _init for a config being read. */
  pose_model_config cfg = {.struct_size = sizeof cfg};
  st = pose_model_get_config(model, &cfg);
  if (st != POSE_OK) {
    fail("pose_model_get_config", st);
    goto done;
  }
  if (cfg.kind != POSE_MODEL_SUMMARIZER) {
    fprintf(stderr, "summarize: %s holds a %s, not a summarizer\n", argv[1],
            pose_model_kind_string(cfg.kind));
    goto done;
  }
  if (cfg.vocab_size < TOP_K) {
    fprintf(stderr, "summarize: vocab_size %zu is below top-k %d\n", cfg.vocab_size, TOP_K);
    goto done;
  }
  printf("summarizer: vocab %zu, dim %zu, %zu layers, %s attention (k = %zu)\n\n", cfg.vocab_size,
         cfg.dim, cfg.num_layers, pose_attention_mode_string(cfg.mode), cfg.skip_factor);

  /* ---- 1. text -> token ids ---------------------------------------------------------------- */
  static document docs[2] = {
      {.text = "The river flooded the old town after three days of rain. Volunteers filled "
               "sandbags along the main street all night. The mayor opened the school as a "
               "shelter for families. By Sunday the water had fallen and the shops began to "
               "reopen."},
      {.text = "The home team won the final in extra time. Fans celebrated in the square "
               "until midnight."},
  };
  const size_t ndocs = 2;
  for (size_t b = 0; b < ndocs; b++) {
    if (!tokenize(&docs[b], cfg.vocab_size)) {
      fprintf(stderr, "summarize: document %zu is empty or too long for this example\n", b);
      goto done;
    }
  }

  /* ---- 2. one padded batch ------------------------------------------------------------------
   * tokens is [batch, seq_len] with seq_len the longest document. lengths[b] tells libpose where
   * document b really ends: positions past it are never attended to and come out as zero rows,
   * so the padding id does not matter (it must still be a valid id; 0 is). */
  size_t seq_len = 0, lengths[2];
  for (size_t b = 0; b < ndocs; b++) {
    lengths[b] = docs[b].length;
    if (lengths[b] > seq_len) seq_len = lengths[b];
  }
  batch_tokens = calloc(ndocs * seq_len, sizeof *batch_tokens);
  if (batch_tokens == NULL) goto oom;
  for (size_t b = 0; b < ndocs; b++) {
    memcpy(batch_tokens + b * seq_len, docs[b].tokens, lengths[b] * sizeof *batch_tokens);
  }

  /* ---- 3. forward ---------------------------------------------------------------------------
   * The output is [batch, seq_len, vocab_size] floats; ask for the count rather than computing
   * it, since the library also checks it for overflow. */
  size_t out_count;
  st = pose_model_output_count(model, ndocs, seq_len, &out_count);
  if (st != POSE_OK) {
    fail("pose_model_output_count", st);
    goto done;
  }
  logits = malloc(out_count * sizeof *logits);
  if (logits == NULL) goto oom;
  st = pose_model_forward_tokens(model, batch_tokens, ndocs, seq_len, lengths, logits, out_count);
  if (st != POSE_OK) {
    fail("pose_model_forward_tokens", st);
    goto done;
  }
  printf("batch of %zu documents padded to %zu tokens, lengths {%zu, %zu}: %zu logits\n\n", ndocs,
         seq_len, lengths[0], lengths[1], out_count);

  /* ---- 4. read the logits --------------------------------------------------------------------
   * Row (b, t) starts at logits + (b * seq_len + t) * vocab_size. pose_top_k gives the ids of the
   * largest logits, best first; its value is this example's per-token "salience". */
  const size_t V = cfg.vocab_size;
  for (size_t b = 0; b < ndocs; b++) {
    const document *d = &docs[b];
    printf("document %zu (%zu tokens, %zu sentences)\n", b, d->length, d->num_sentences);
    printf("  top-%d predicted tokens at the first positions:\n", TOP_K);
    float max_logit[MAX_TOKENS];
    for (size_t t = 0; t < d->length; t++) {
      size_t idx[TOP_K];
      float val[TOP_K];
      st = pose_top_k(logits + (b * seq_len + t) * V, V, TOP_K, idx, val);
      if (st != POSE_OK) {
        fail("pose_top_k", st);
        goto done;
      }
      max_logit[t] = val[0];
      if (t < 4) {
        printf("    %2zu %-10s ->", t, d->words[t]);
        for (int j = 0; j < TOP_K; j++) print_token(docs, ndocs, idx[j]);
        printf(" (logit %.3f)\n", (double)val[0]);
      }
    }
    if (b == 0) {
      printf("    (#N: an id none of the example's words hashes to. A repeated word gets the same\n"
             "     prediction wherever it is: the seed adds no positional encoding, so attention\n"
             "     cannot tell positions apart; cfg.positional_encoding = 1 adds slide 5's.)\n");
    }

    /* Sentence score = mean over its tokens of the top logit. Keep the best half (at least one)
     * and print them in document order, as an extractive summary would. */
    double score[MAX_SENTENCES];
    size_t begin = 0;
    printf("  sentence scores (mean top logit):\n");
    for (size_t s = 0; s < d->num_sentences; s++) {
      double sum = 0.0;
      for (size_t t = begin; t < d->sentence_end[s]; t++) sum += max_logit[t];
      score[s] = sum / (double)(d->sentence_end[s] - begin);
      printf("    %6.3f  ", score[s]);
      print_span(d, begin, d->sentence_end[s]);
      printf("\n");
      begin = d->sentence_end[s];
    }
    size_t keep = d->num_sentences / 2 > 0 ? d->num_sentences / 2 : 1;
    printf("  summary (%zu of %zu sentences, in document order):\n", keep, d->num_sentences);
    begin = 0;
    for (size_t s = 0; s < d->num_sentences; s++) {
      size_t better = 0; /* rank by counting sentences that beat this one; ties go to the earlier */
      for (size_t o = 0; o < d->num_sentences; o++) {
        if (score[o] > score[s] || (score[o] == score[s] && o < s)) better++;
      }
      if (better < keep) {
        printf("    - ");
        print_span(d, begin, d->sentence_end[s]);
        printf(".\n");
      }
      begin = d->sentence_end[s];
    }
    printf("\n");
  }

  /* ---- 5. check the batching contract -------------------------------------------------------
   * The shorter document must give the same logits batched as alone, and its padded rows must
   * be zero. This is what makes padding safe; the example verifies it rather than assume it. */
  size_t shortest = lengths[0] < lengths[1] ? 0 : 1;
  size_t n = lengths[shortest];
  size_t alone_count;
  st = pose_model_output_count(model, 1, n, &alone_count);
  if (st != POSE_OK) {
    fail("pose_model_output_count", st);
    goto done;
  }
  alone = malloc(alone_count * sizeof *alone);
  if (alone == NULL) goto oom;
  st = pose_model_forward_tokens(model, docs[shortest].tokens, 1, n, NULL, alone, alone_count);
  if (st != POSE_OK) {
    fail("pose_model_forward_tokens (alone)", st);
    goto done;
  }
  const float *batched = logits + shortest * seq_len * V;
  double max_diff = 0.0;
  int same = 1;
  for (size_t i = 0; i < n * V; i++) {
    double diff = fabs((double)batched[i] - (double)alone[i]);
    if (!(diff <= max_diff)) max_diff = isnan(diff) ? INFINITY : diff;
    same &= diff <= 1e-5 + 1e-5 * fabs((double)alone[i]); /* float32 rounding, not equality */
  }
  size_t nonzero_pad = 0;
  for (size_t i = n * V; i < seq_len * V; i++) nonzero_pad += batched[i] != 0.0f;
  int ok = same && nonzero_pad == 0;
  printf("check: document %zu batched vs alone max |diff| %.3g; %zu padded rows, %zu nonzero "
         "values -> %s\n",
         shortest, max_diff, seq_len - n, nonzero_pad, ok ? "OK" : "FAILED");
  rc = ok ? 0 : 1;
  goto done;

oom:
  fprintf(stderr, "summarize: out of memory\n");
done:
  free(alone);
  free(logits);
  free(batch_tokens);
  pose_model_free(model);
  return rc;
}
