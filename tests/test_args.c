/* Every public function that can fail, called with NULL pointers, zero and overflowing sizes and
 * short buffers: each returns its documented status, writes nothing, and names what was wrong.
 * One row per call; the table is the checklist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pose.h"

/* Shared, valid objects the rows misuse one argument at a time. */
static pose_attention_module *A;
static pose_model *M, *S;
static pose_attention_config AC;
static pose_model_config MC;
static pose_load_options LO;
static float X[4096], Y[4096];
static int64_t TOK[64];
static size_t IDX[8], COUNT;
static const float *PTR;
static pose_cost COST;
static pose_layer_info INFO = {.struct_size = sizeof(pose_layer_info)};
static const size_t BAD_LEN[2] = {3, 0}; /* 3 > seq_len 2 is reported first */
static const pose_weight NULL_NAME[1] = {{NULL, X, 1}};
#define BIG ((size_t)1 << 62)
#define D 8 /* width of A and M */

#define ROW(id, expr) \
  static pose_status id(void) { return expr; }
/* clang-format off */
ROW(linear_x,        pose_linear(NULL, 1, 2, X, NULL, 2, Y, 2))
ROW(linear_w,        pose_linear(X, 1, 2, NULL, NULL, 2, Y, 2))
ROW(linear_y,        pose_linear(X, 1, 2, X, NULL, 2, NULL, 2))
ROW(linear_rows,     pose_linear(X, 0, 2, X, NULL, 2, Y, 2))
ROW(linear_short,    pose_linear(X, 2, 2, X, NULL, 2, Y, 3))
ROW(linear_overflow, pose_linear(X, BIG, BIG, X, NULL, 2, Y, 4))
ROW(ln_x,            pose_layer_norm(NULL, 1, 4, NULL, NULL, 1e-5f, Y, 4))
ROW(ln_dim,          pose_layer_norm(X, 1, 0, NULL, NULL, 1e-5f, Y, 4))
ROW(ln_short,        pose_layer_norm(X, 2, 4, NULL, NULL, 1e-5f, Y, 7))
ROW(ln_overflow,     pose_layer_norm(X, BIG, BIG, NULL, NULL, 1e-5f, Y, 4))
ROW(ln_eps,          pose_layer_norm(X, 1, 4, NULL, NULL, -1.0f, Y, 4))
ROW(relu_y,          pose_relu(X, 4, NULL, 4))
ROW(relu_short,      pose_relu(X, 4, Y, 3))
ROW(softmax_cols,    pose_softmax(X, 1, 0, Y, 4))
ROW(softmax_short,   pose_softmax(X, 2, 4, Y, 5))
ROW(softmax_overflow, pose_softmax(X, BIG, BIG, Y, 4))
ROW(pe_odd,          pose_positional_encoding(4, 3, Y, 12))
ROW(pe_short,        pose_positional_encoding(4, 4, Y, 15))
ROW(pe_null,         pose_positional_encoding(4, 4, NULL, 16))
ROW(pe_add_overflow, pose_positional_encoding_add(Y, BIG, BIG, 2))
ROW(fn_query,        pose_attention(NULL, X, X, 1, 4, 4, 2, 1, Y, 16))
ROW(fn_skip,         pose_attention(X, X, X, 1, 4, 4, 0, 1, Y, 16))
ROW(fn_short,        pose_attention(X, X, X, 1, 4, 4, 2, 1, Y, 15))
ROW(fn_overflow,     pose_attention(X, X, X, BIG, BIG, 4, 2, 1, Y, 16))
ROW(attn_create_cfg, pose_attention_create(NULL, (pose_attention_module **)&PTR))
ROW(attn_create_out, pose_attention_create(&AC, NULL))
ROW(attn_weights_null, pose_attention_create_from_weights(&AC, NULL, 3, (pose_attention_module **)&PTR))
ROW(attn_weights_name, pose_attention_create_from_weights(&AC, NULL_NAME, 1, (pose_attention_module **)&PTR))
ROW(attn_get_config, pose_attention_get_config(A, NULL))
ROW(attn_get_weight_name, pose_attention_get_weight(A, NULL, &PTR, &COUNT))
ROW(attn_get_weight_unknown, pose_attention_get_weight(A, "nope", &PTR, &COUNT))
ROW(attn_skip_zero,  pose_attention_skip_for(A, 0, &COUNT))
ROW(attn_fwd_null,   pose_attention_forward(NULL, X, 1, 2, NULL, Y, 2 * D))
ROW(attn_fwd_batch,  pose_attention_forward(A, X, 0, 2, NULL, Y, 2 * D))
ROW(attn_fwd_short,  pose_attention_forward(A, X, 1, 2, NULL, Y, 2 * D - 1))
ROW(attn_fwd_len,    pose_attention_forward(A, X, 2, 2, BAD_LEN, Y, 4 * D))
ROW(attn_fwd_overflow, pose_attention_forward(A, X, BIG, BIG, NULL, Y, 4 * D))
ROW(cost_null,       pose_attention_cost(&AC, 1, 4, NULL))
ROW(cost_zero,       pose_attention_cost(&AC, 1, 0, &COST))
ROW(model_cfg_init,  pose_model_config_init(NULL, POSE_MODEL_LAYER))
ROW(model_create_out, pose_model_create(&MC, NULL))
ROW(model_weights_null, pose_model_create_from_weights(&MC, NULL, 2, (pose_model **)&PTR))
ROW(model_get_config, pose_model_get_config(M, NULL))
ROW(model_get_weight, pose_model_get_weight(M, "attn.query.weight", NULL, &COUNT))
ROW(model_layer_info, pose_model_layer_info(M, 1, &INFO))
ROW(model_count_null, pose_model_output_count(M, 1, 2, NULL))
ROW(model_count_overflow, pose_model_output_count(M, BIG, BIG, &COUNT))
ROW(model_fwd_input, pose_model_forward(M, NULL, 1, 2, NULL, Y, 2 * D))
ROW(model_fwd_seq,   pose_model_forward(M, X, 1, 0, NULL, Y, 2 * D))
ROW(model_fwd_short, pose_model_forward(M, X, 1, 2, NULL, Y, 2 * D - 1))
ROW(model_fwd_len,   pose_model_forward(M, X, 2, 2, BAD_LEN, Y, 4 * D))
ROW(model_fwd_kind,  pose_model_forward(S, X, 1, 2, NULL, Y, 4096))
ROW(model_tok_range, pose_model_forward_tokens(S, TOK, 1, 2, NULL, Y, 4096))
ROW(model_tok_kind,  pose_model_forward_tokens(M, TOK, 1, 2, NULL, Y, 4096))
ROW(model_tok_overflow, pose_model_forward_tokens(S, TOK, BIG, BIG, NULL, Y, 4096))
ROW(topk_k,          pose_top_k(X, 4, 5, IDX, NULL))
ROW(topk_idx,        pose_top_k(X, 4, 2, NULL, NULL))
ROW(load_path,       pose_model_load(NULL, &LO, (pose_model **)&PTR))
ROW(load_out,        pose_model_load("x", &LO, NULL))
ROW(load_missing,    pose_model_load("/nonexistent/x.safetensors", &LO, (pose_model **)&PTR))
ROW(load_mem_null,   pose_model_load_memory(NULL, 8, &LO, (pose_model **)&PTR))
ROW(load_mem_short,  pose_model_load_memory(X, 4, &LO, (pose_model **)&PTR))
ROW(save_path,       pose_model_save(M, NULL))
ROW(save_dir,        pose_model_save(M, "/nonexistent/dir/x.safetensors"))
ROW(threads_neg,     pose_set_num_threads(-3))
ROW(pe_at_neg,       pose_positional_encoding_at(TOK + 1, 1, 4, Y, 4))
ROW(pe_at_short,     pose_positional_encoding_at(TOK + 2, 1, 4, Y, 3))
ROW(ids_chunks,      pose_sample_position_ids(4, 8, 5, 1, TOK + 8, 4))
ROW(ids_short,       pose_sample_position_ids(4, 8, 2, 1, TOK + 8, 3))
ROW(map_head,        pose_attention_map(A, X, 2, 1, Y, 64, IDX, 8))
ROW(map_short,       pose_attention_map(A, X, 4, 0, Y, 3, IDX, 8))
ROW(map_size_null,   pose_attention_map_size(A, 4, NULL))
ROW(model_map_both,  pose_model_attention_map(M, 0, X, TOK, 2, 0, Y, 64, IDX, 8))
ROW(model_map_layer, pose_model_attention_map_size(M, 1, 2, &COUNT))
/* clang-format on */

typedef struct row {
  const char *name;
  pose_status (*call)(void);
  pose_status expect;
  const char *text; /* must appear in pose_last_error() */
} row;

#define R(id, st, text) {#id, id, st, text}
static const row rows[] = {
    R(linear_x, POSE_ERR_INVALID_ARGUMENT, "x is NULL"),
    R(linear_w, POSE_ERR_INVALID_ARGUMENT, "weight is NULL"),
    R(linear_y, POSE_ERR_INVALID_ARGUMENT, "y is NULL"),
    R(linear_rows, POSE_ERR_INVALID_ARGUMENT, "rows is 0"),
    R(linear_short, POSE_ERR_BUFFER_TOO_SMALL, "y_count"),
    R(linear_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(ln_x, POSE_ERR_INVALID_ARGUMENT, "x is NULL"),
    R(ln_dim, POSE_ERR_INVALID_ARGUMENT, "dim is 0"),
    R(ln_short, POSE_ERR_BUFFER_TOO_SMALL, "need 8"),
    R(ln_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(ln_eps, POSE_ERR_INVALID_ARGUMENT, "eps"),
    R(relu_y, POSE_ERR_INVALID_ARGUMENT, "y is NULL"),
    R(relu_short, POSE_ERR_BUFFER_TOO_SMALL, "need 4"),
    R(softmax_cols, POSE_ERR_INVALID_ARGUMENT, "cols is 0"),
    R(softmax_short, POSE_ERR_BUFFER_TOO_SMALL, "need 8"),
    R(softmax_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(pe_odd, POSE_ERR_INVALID_ARGUMENT, "even"),
    R(pe_short, POSE_ERR_BUFFER_TOO_SMALL, "need 16"),
    R(pe_null, POSE_ERR_INVALID_ARGUMENT, "pe is NULL"),
    R(pe_add_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(fn_query, POSE_ERR_INVALID_ARGUMENT, "query is NULL"),
    R(fn_skip, POSE_ERR_INVALID_ARGUMENT, "skip_factor is 0"),
    R(fn_short, POSE_ERR_BUFFER_TOO_SMALL, "need 16"),
    R(fn_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(attn_create_cfg, POSE_ERR_INVALID_ARGUMENT, "cfg is NULL"),
    R(attn_create_out, POSE_ERR_INVALID_ARGUMENT, "out is NULL"),
    R(attn_weights_null, POSE_ERR_INVALID_ARGUMENT, "weights is NULL"),
    R(attn_weights_name, POSE_ERR_INVALID_ARGUMENT, "name is NULL"),
    R(attn_get_config, POSE_ERR_INVALID_ARGUMENT, "cfg is NULL"),
    R(attn_get_weight_name, POSE_ERR_INVALID_ARGUMENT, "name is NULL"),
    R(attn_get_weight_unknown, POSE_ERR_WEIGHTS, "\"nope\""),
    R(attn_skip_zero, POSE_ERR_INVALID_ARGUMENT, "seq_len is 0"),
    R(attn_fwd_null, POSE_ERR_INVALID_ARGUMENT, "attn is NULL"),
    R(attn_fwd_batch, POSE_ERR_INVALID_ARGUMENT, "batch is 0"),
    R(attn_fwd_short, POSE_ERR_BUFFER_TOO_SMALL, "out_count"),
    R(attn_fwd_len, POSE_ERR_INVALID_ARGUMENT, "lengths[0] is 3"),
    R(attn_fwd_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(cost_null, POSE_ERR_INVALID_ARGUMENT, "cost is NULL"),
    R(cost_zero, POSE_ERR_INVALID_ARGUMENT, "seq_len is 0"),
    R(model_cfg_init, POSE_ERR_INVALID_ARGUMENT, "cfg is NULL"),
    R(model_create_out, POSE_ERR_INVALID_ARGUMENT, "out is NULL"),
    R(model_weights_null, POSE_ERR_INVALID_ARGUMENT, "weights is NULL"),
    R(model_get_config, POSE_ERR_INVALID_ARGUMENT, "cfg is NULL"),
    R(model_get_weight, POSE_ERR_INVALID_ARGUMENT, "data is NULL"),
    R(model_layer_info, POSE_ERR_INVALID_ARGUMENT, "layer_index is 1"),
    R(model_count_null, POSE_ERR_INVALID_ARGUMENT, "count is NULL"),
    R(model_count_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(model_fwd_input, POSE_ERR_INVALID_ARGUMENT, "input is NULL"),
    R(model_fwd_seq, POSE_ERR_INVALID_ARGUMENT, "seq_len is 0"),
    R(model_fwd_short, POSE_ERR_BUFFER_TOO_SMALL, "out_count"),
    R(model_fwd_len, POSE_ERR_INVALID_ARGUMENT, "lengths[0] is 3"),
    R(model_fwd_kind, POSE_ERR_INVALID_ARGUMENT, "pose_model_forward_tokens"),
    R(model_tok_range, POSE_ERR_INVALID_ARGUMENT, "tokens[0][0]"),
    R(model_tok_kind, POSE_ERR_INVALID_ARGUMENT, "use pose_model_forward"),
    R(model_tok_overflow, POSE_ERR_SIZE_OVERFLOW, "overflow"),
    R(topk_k, POSE_ERR_INVALID_ARGUMENT, "k is 5"),
    R(topk_idx, POSE_ERR_INVALID_ARGUMENT, "indices is NULL"),
    R(load_path, POSE_ERR_INVALID_ARGUMENT, "path is NULL"),
    R(load_out, POSE_ERR_INVALID_ARGUMENT, "out is NULL"),
    R(load_missing, POSE_ERR_IO, "/nonexistent/x.safetensors"),
    R(load_mem_null, POSE_ERR_INVALID_ARGUMENT, "data is NULL"),
    R(load_mem_short, POSE_ERR_FORMAT, "8"),
    R(save_path, POSE_ERR_INVALID_ARGUMENT, "path is NULL"),
    R(save_dir, POSE_ERR_IO, "/nonexistent/dir"),
    R(threads_neg, POSE_ERR_INVALID_ARGUMENT, "-3"),
    R(pe_at_neg, POSE_ERR_INVALID_ARGUMENT, "positions[0] is -1"),
    R(pe_at_short, POSE_ERR_BUFFER_TOO_SMALL, "need 4"),
    R(ids_chunks, POSE_ERR_INVALID_ARGUMENT, "num_chunks"),
    R(ids_short, POSE_ERR_BUFFER_TOO_SMALL, "need 4"),
    R(map_head, POSE_ERR_INVALID_ARGUMENT, "head"),
    R(map_short, POSE_ERR_BUFFER_TOO_SMALL, "probs_count"),
    R(map_size_null, POSE_ERR_INVALID_ARGUMENT, "num_keys is NULL"),
    R(model_map_both, POSE_ERR_INVALID_ARGUMENT, "input"),
    R(model_map_layer, POSE_ERR_INVALID_ARGUMENT, "layer_index is 1"),
};

static void every_row(void **state) {
  (void)state;
  int failures = 0;
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    memset(Y, 0, sizeof Y);
    PTR = (const float *)X; /* out-parameters must be reset to NULL on failure */
    pose_status st = rows[i].call();
    const char *err = pose_last_error();
    bool ok = st == rows[i].expect && strstr(err, rows[i].text) != NULL;
    for (size_t j = 0; ok && j < sizeof Y / sizeof Y[0]; j++) ok = Y[j] == 0.0f;
    if (!ok) {
      print_error("%s: got %d (%s) \"%s\", want %d with \"%s\" and nothing written\n",
                  rows[i].name, (int)st, pose_status_string(st), err, (int)rows[i].expect,
                  rows[i].text);
      failures++;
    }
  }
  assert_int_equal(failures, 0);
}

static int setup(void **state) {
  (void)state;
  pose_attention_config_init(&AC);
  AC.dim = D;
  pose_model_config_init(&MC, POSE_MODEL_LAYER);
  MC.dim = D, MC.ff_dim = 16;
  pose_load_options_init(&LO);
  LO.skip_factor = 2;
  pose_model_config sc;
  pose_model_config_init(&sc, POSE_MODEL_SUMMARIZER);
  sc.vocab_size = 5, sc.dim = D, sc.ff_dim = 16, sc.num_layers = 1;
  TOK[0] = 5; /* one past the vocabulary */
  TOK[1] = -1; /* a negative position */
  for (size_t i = 0; i < 4; i++) X[i] = (float)i;
  return pose_attention_create(&AC, &A) || pose_model_create(&MC, &M) ||
         pose_model_create(&sc, &S);
}

static int teardown(void **state) {
  (void)state;
  pose_attention_free(A);
  pose_model_free(M);
  pose_model_free(S);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(every_row)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
