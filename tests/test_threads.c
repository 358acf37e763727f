/* One shared model, 8 threads, many forward calls each: every result bitwise equal to a
 * single-threaded run (handles are immutable; a forward touches only its own scratch). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pose.h"
#include "testutil.h"

#define THREADS 8
#define CALLS 25

typedef struct job {
  const pose_model *summarizer, *classifier;
  const pose_attention_module *attn;
  const int64_t *tokens;
  const float *features, *x;
  const float *want_logits, *want_classes, *want_attn;
  size_t n_logits, n_classes, n_attn;
  int mismatches;
} job;

static const size_t B = 2, N = 37, LENGTHS[2] = {37, 20};

static void *worker(void *arg) {
  job *j = arg;
  float *logits = malloc(j->n_logits * sizeof(float));
  float *classes = malloc(j->n_classes * sizeof(float));
  float *attn = malloc(j->n_attn * sizeof(float));
  for (int i = 0; i < CALLS; i++) {
    /* Interleave the three kinds of call so different scratch sizes overlap in time. */
    if (pose_model_forward_tokens(j->summarizer, j->tokens, B, N, LENGTHS, logits,
                                  j->n_logits) != POSE_OK ||
        memcmp(logits, j->want_logits, j->n_logits * sizeof(float)) != 0) {
      j->mismatches++;
    }
    if (pose_model_forward(j->classifier, j->features, B, N, NULL, classes, j->n_classes) !=
            POSE_OK ||
        memcmp(classes, j->want_classes, j->n_classes * sizeof(float)) != 0) {
      j->mismatches++;
    }
    if (pose_attention_forward(j->attn, j->x, B, N, LENGTHS, attn, j->n_attn) != POSE_OK ||
        memcmp(attn, j->want_attn, j->n_attn * sizeof(float)) != 0) {
      j->mismatches++;
    }
  }
  free(logits), free(classes), free(attn);
  return NULL;
}

static void shared_handles_across_threads(void **state) {
  (void)state;
  pose_model_config sc, cc;
  pose_model_config_init(&sc, POSE_MODEL_SUMMARIZER);
  sc.vocab_size = 300, sc.dim = 32, sc.ff_dim = 64, sc.num_layers = 2, sc.num_heads = 2;
  sc.skip_factor = 3;
  pose_model_config_init(&cc, POSE_MODEL_CLASSIFIER);
  cc.input_dim = 20, cc.dim = 32, cc.ff_dim = 64, cc.num_layers = 2, cc.num_classes = 7;
  cc.mode = POSE_MODE_ADAPTIVE, cc.max_seq_len = 60, cc.positional_encoding = 1;
  pose_attention_config ac;
  pose_attention_config_init(&ac);
  ac.layout = POSE_LAYOUT_QKV_PROJ, ac.mode = POSE_MODE_FULL, ac.dim = 32, ac.num_heads = 4;

  job j = {0};
  pose_model *s = NULL, *c = NULL;
  pose_attention_module *a = NULL;
  assert_int_equal(pose_model_create(&sc, &s), POSE_OK);
  assert_int_equal(pose_model_create(&cc, &c), POSE_OK);
  assert_int_equal(pose_attention_create(&ac, &a), POSE_OK);
  j.summarizer = s, j.classifier = c, j.attn = a;
  int64_t *tokens = malloc(B * N * sizeof *tokens);
  for (size_t i = 0; i < B * N; i++) tokens[i] = (int64_t)((i * 31) % 300);
  float *features = test_alloc_f32(B * N * 20), *x = test_alloc_f32(B * N * 32);
  fill_uniform(features, B * N * 20, 1, -1, 1);
  fill_uniform(x, B * N * 32, 2, -1, 1);
  j.tokens = tokens, j.features = features, j.x = x;
  j.n_logits = B * N * 300, j.n_classes = B * 7, j.n_attn = B * N * 32;
  float *wl = test_alloc_f32(j.n_logits), *wc = test_alloc_f32(j.n_classes);
  float *wa = test_alloc_f32(j.n_attn);
  assert_int_equal(pose_model_forward_tokens(s, tokens, B, N, LENGTHS, wl, j.n_logits), POSE_OK);
  assert_int_equal(pose_model_forward(c, features, B, N, NULL, wc, j.n_classes), POSE_OK);
  assert_int_equal(pose_attention_forward(a, x, B, N, LENGTHS, wa, j.n_attn), POSE_OK);
  j.want_logits = wl, j.want_classes = wc, j.want_attn = wa;

  pthread_t t[THREADS];
  job jobs[THREADS];
  for (int i = 0; i < THREADS; i++) {
    jobs[i] = j;
    assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
  }
  int mismatches = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    mismatches += jobs[i].mismatches;
  }
  assert_int_equal(mismatches, 0);
  free(tokens), free(features), free(x), free(wl), free(wc), free(wa);
  pose_model_free(s), pose_model_free(c);
  pose_attention_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shared_handles_across_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
