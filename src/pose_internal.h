/*
 * pose_internal.h -- what libpose's source files share. Not installed.
 *
 * Layering (data flows one way): models -> modules -> kernels -> blas.c. Nothing here is
 * exported; only functions declared in include/pose.h carry POSE_API.
 */
#ifndef POSE_INTERNAL_H
#define POSE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pose.h"

#if defined(__GNUC__)
#  define POSE_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#  define POSE_UNUSED __attribute__((unused))
#else
#  define POSE_PRINTF(fmt, args)
#  define POSE_UNUSED
#endif

/* ---- errors (src/status.c) -------------------------------------------------------------- */

/** Records a detail message for the calling thread and returns status, so a failure reads
 *  `return pose_fail(POSE_ERR_INVALID_ARGUMENT, "pose_linear: x is NULL");`. */
pose_status pose_fail(pose_status status, const char *fmt, ...) POSE_PRINTF(2, 3);

/* Argument-check helpers: each records "<fn>: <what>" and returns the status on failure. */
#define POSE_CHECK_PTR(fn, p)                                                               \
  do {                                                                                      \
    if ((p) == NULL) return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, #p); \
  } while (0)
#define POSE_CHECK_NONZERO(fn, n)                                                     \
  do {                                                                                \
    if ((n) == 0) return pose_fail(POSE_ERR_INVALID_ARGUMENT, "%s: %s is 0", fn, #n); \
  } while (0)

/* ---- sizes (src/status.c) ---------------------------------------------------------------- */

/** *out = a * b; false on overflow. */
static inline bool pose_mul(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
/** *out = a * b * c; false on overflow. */
static inline bool pose_mul3(size_t a, size_t b, size_t c, size_t *out) {
  size_t t;
  return pose_mul(a, b, &t) && pose_mul(t, c, out);
}
/** *out = a + b; false on overflow. */
static inline bool pose_add(size_t a, size_t b, size_t *out) {
  return !__builtin_add_overflow(a, b, out);
}

/** Checks rows * cols fits and that a buffer of `have` elements holds it. Records
 *  "<fn>: <what> ..." on failure. */
pose_status pose_check_count(const char *fn, const char *what, size_t have, size_t need);
/** *need = a * b * c, or POSE_ERR_SIZE_OVERFLOW naming fn. */
pose_status pose_count3(const char *fn, size_t a, size_t b, size_t c, size_t *need);

/* ---- memory (src/alloc.c) ------------------------------------------------------------------
 * Every allocation goes through the installed pose_allocator, 64-byte aligned. On failure the
 * functions return NULL and record POSE_ERR_OUT_OF_MEMORY with the size; callers return
 * POSE_ERR_OUT_OF_MEMORY. pose_free(NULL) is a no-op. */
void *pose_malloc(size_t bytes);
/** count * size bytes, zeroed; NULL (and an overflow message) if the product overflows. */
void *pose_calloc(size_t count, size_t size);
/** count floats, uninitialised; NULL on overflow or failure. */
float *pose_alloc_floats(size_t count);
void pose_free(void *p);
/** Copy of a NUL-terminated string, or NULL. */
char *pose_strdup(const char *s);

/* ---- threads (src/threads.c) -------------------------------------------------------------
 * libpose's worker pool. A parallel region runs tasks 0..ntasks-1, each exactly once, on up to
 * pose_threads() workers; worker (0..pose_threads()-1) indexes per-worker scratch. The split into
 * tasks must depend only on the shapes, never on the thread count, and a task may write only its
 * own outputs: then results are bitwise identical for any thread count. A region started while
 * another runs (another application thread, or from inside a task) runs on its calling thread
 * as worker 0. */
int pose_threads(void);
typedef void (*pose_task_fn)(void *ctx, size_t task, size_t worker);
/** flops: about how much work the region is; a small one runs on the calling thread, where
 *  waking the workers would cost more than it saves. */
void pose_parallel_for(size_t ntasks, double flops, pose_task_fn fn, void *ctx);

/* ---- random numbers (src/rng.c) -----------------------------------------------------------
 * Deterministic, platform-independent generator (splitmix64-seeded xoshiro256**), so a seeded
 * model is the same everywhere. Draws follow PyTorch's default initialisations. */
typedef struct pose_rng {
  uint64_t s[4];
} pose_rng;
void pose_rng_seed(pose_rng *rng, uint64_t seed);
uint64_t pose_rng_next(pose_rng *rng);
/** Uniform in [lo, hi). */
float pose_rng_uniform(pose_rng *rng, float lo, float hi);
/** Standard normal (Box-Muller). */
float pose_rng_normal(pose_rng *rng);
/** nn.Linear default: weight [out, in] and bias [out] uniform in +-1/sqrt(in). bias may be NULL. */
void pose_rng_linear(pose_rng *rng, size_t out_features, size_t in_features, float *weight,
                     float *bias);

/* ---- BLAS (src/blas.c, the only file that includes cblas.h) -------------------------------
 * Row-major GEMM: C[m, n] = alpha * op(A)[m, k] . op(B)[k, n] + beta * C. Leading dimensions are
 * in elements; strided views pass a leading dimension of k * row_stride. Dimensions must fit in
 * the BLAS int (checked by callers through pose_blas_dims_ok). */
void pose_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc);
/** True when every value fits the BLAS integer type. */
bool pose_blas_dims_ok(size_t m, size_t n, size_t k, size_t lda, size_t ldb, size_t ldc);
/** y[rows, out] (leading dim ldy) = x[rows, in] (leading dim ldx) . W^T + bias. W is [out, in].
 *  Runs in parallel on the worker pool in fixed tiles of rows (and of columns for wide outputs)
 *  counted from x's first row; y must not overlap x. */
void pose_linear_rows(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                      const float *bias, size_t out, float *y, size_t ldy);
/** As pose_linear_rows in one sgemm call on the calling thread (for use inside a task). */
void pose_linear_serial(const float *x, size_t ldx, size_t rows, size_t in, const float *w,
                        const float *bias, size_t out, float *y, size_t ldy);
/** One linear product of a batch of them (arguments as pose_linear_rows). */
typedef struct pose_linear_job {
  const float *x;
  size_t ldx, rows, in;
  const float *w, *bias;
  size_t out;
  float *y;
  size_t ldy;
  bool transposed; /* write y^T: y is [out, rows], y[o * ldy + r] */
} pose_linear_job;
/** Fills *out with job number `job` of a batch. */
typedef void (*pose_job_fn)(const void *ctx, size_t job, pose_linear_job *out);
/** Runs njobs linear products, each with at most max_rows rows and exactly `out` output
 *  features, in one parallel region: each job is tiled from its own first row as
 *  pose_linear_rows tiles it, so a job gives the same bits whatever else runs with it. */
void pose_linear_many(size_t njobs, size_t max_rows, size_t out, pose_job_fn describe,
                      const void *ctx);
/** Number of column tiles pose_linear_rows splits `out` output features into. */
size_t pose_linear_col_tiles(size_t out);
/** Sets OpenBLAS's thread count. */
void pose_blas_set_threads(int n);

/* ---- kernels (src/kernels.c), unchecked versions used inside the library ------------------ */
void pose_layer_norm_rows(const float *x, size_t rows, size_t dim, const float *gamma,
                          const float *beta, float eps, float *y);
void pose_relu_inplace(float *x, size_t count);
/** Softmax of one row of n values, in place; all -inf gives zeros. */
void pose_softmax_row(float *x, size_t n);
/** Frequency of column pair i (i even) of the slide 5 encoding for width dim, rounded as
 *  PyTorch computes it (float32, its vectorised expf). */
float pose_posenc_frequency(size_t i, size_t dim);
/** Adds the slide 5 encoding of positions 0..rows-1 to x[rows, dim] (dim even). */
void pose_posenc_add_rows(float *x, size_t rows, size_t dim);

/* ---- softmax row pass (src/softmax_simd.c) ------------------------------------------------
 * Vectorised exp (about 1 ulp; -inf and anything below -104 give 0, NaN stays NaN) picked at
 * run time among AVX-512F, AVX2+FMA and plain C. */
enum { POSE_SIMD_SCALAR = 0, POSE_SIMD_AVX2 = 1, POSE_SIMD_AVX512 = 2 };
/** Forces a code path (for tests); a level the CPU lacks, or < 0, selects the best one.
 *  Returns the level now in use. Not thread-safe. */
int pose_simd_set_level(int level);
/** x[i] = exp(x[i] - shift) for i < n; returns their float sum (fixed summation order). */
float pose_exp_shift_sum(float *x, size_t n, float shift);
/** Largest of x[0..n), -inf for n == 0. */
float pose_row_max(const float *x, size_t n);
/** Online-softmax update of one row of scores s[0..n) against its running max *m and running
 *  sum *l (start: -inf and 0): s becomes exp(s - m_new), *m = m_new, *l = *l * alpha + sum.
 *  Returns alpha = exp(m_old - m_new), the factor the row's output accumulator must be scaled
 *  by. While every score seen is -inf the row's weights are 0 and alpha is 1. */
float pose_online_softmax_row(float *s, size_t n, float *m, double *l);

/* ---- attention core (src/attention_core.c) ------------------------------------------------
 * One head of attention for one sequence:
 *   out[i, :] = softmax_j(scale * q[i, :] . k[j, :]) . v[j, :],  j < nkeys,
 * with q rows at q + i*ldq, k rows at k + j*ldk, v rows at v + j*ldv, out rows at out + i*ldo.
 * Strided attention passes ldk = ldv = skip * row_stride. nkeys == 0 gives zero rows. out may
 * be the q rows themselves (each block is read before its output is written). Computed in
 * blocks of queries against tiles of keys with an online softmax; see attention_core.c. */
typedef struct pose_attn_head {
  const float *q;
  size_t ldq, nq;
  const float *k;
  size_t ldk;
  const float *v;
  size_t ldv, nkeys, head_dim;
  float scale;
  float *out;
  size_t ldo;
  /* k and v stored transposed, [head_dim, nkeys]: key j's element c at k[c * ldk + j]. A head
   * of a [keys, dim] buffer is a 1 KiB-strided column slice that OpenBLAS packs slowly for
   * every tile; transposed, each tile is head_dim contiguous runs. */
  bool kv_transposed;
  /* Masks (all zero: none). Query i is at position i; key j at position j * skip (skip 0 reads
   * as 1). causal: query i attends only positions <= i. window > 0 (local + strided): k and v
   * hold every position (nkeys rows, not transposed) and query i attends the union of
   * |i - p| <= window and the positions 0, skip, 2 skip, ... (read in place, leading dimension
   * skip * ldk). */
  bool causal;
  size_t skip;
  size_t window;
  /* With window > 0: positions 0..num_global-1 are attended by every query too (causal
   * applies), a third pass over the rows not already in the window or strided. */
  size_t num_global;
  /* levels > 0 (hierarchical): k and v hold the level-0 positions 0, skip, 2 skip, ... as rows
   * (not transposed), and level l reads every 2^l-th of them in place; all levels feed the same
   * online softmax (the log-sum-exp merge of their partials). */
  size_t levels;
  /* top_m > 0 (importance): k and v hold every position as rows (not transposed); each query
   * block attends its top_m keys by pose_importance_select, gathered into the worker's scratch. */
  size_t top_m;
} pose_attn_head;
/** Importance selection of POSE_MODE_IMPORTANCE for one query block: mean of the m query rows
 *  q (leading dimension ldq, head_dim hd), score_j = scale * mean . k_j in double for the
 *  candidate keys j < ncand (rows of k, leading dimension ldk), then the top_m best (ties to the
 *  lower position) written to sel in ascending order. mean holds hd doubles, scores ncand
 *  doubles, sel ncand entries. Returns the count, min(top_m, ncand). */
size_t pose_importance_select(const float *q, size_t ldq, size_t m, const float *k, size_t ldk,
                              size_t ncand, size_t hd, float scale, size_t top_m, double *mean,
                              double *scores, size_t *sel);
/** Extra floats of a worker's scratch for importance selection over at most max_keys keys with
 *  at most top_m selected (0 on overflow). */
size_t pose_importance_work_floats(size_t head_dim, size_t max_keys, size_t top_m);
/** Floats of one worker's scratch for heads of head_dim with at most max_keys keys (0 on
 *  overflow). Independent of the number of queries. */
size_t pose_attention_work_floats(size_t head_dim, size_t max_keys);
/** Queries per block and keys per tile (for tests that probe the tile edges). */
size_t pose_attention_tile_queries(void);
size_t pose_attention_tile_keys(void);
/** Number of query blocks of a head with nq queries. */
size_t pose_attention_blocks(size_t nq);
/** Query block `block` of head h, with one worker's scratch. */
void pose_attention_block(const pose_attn_head *h, size_t block, float *work);
/** Every block of head h, on the calling thread. */
void pose_attention_core(const pose_attn_head *h, float *work);
/** Fills *out with head `head` of sequence `seq`. */
typedef void (*pose_head_fn)(const void *ctx, size_t seq, size_t head, pose_attn_head *out);
/** batch x heads heads, each with at most max_nq queries, in one parallel region over their
 *  query blocks. work holds pose_threads() slots of work_floats floats. */
void pose_attention_heads(size_t batch, size_t heads, size_t max_nq, pose_head_fn describe,
                          const void *ctx, float *work, size_t work_floats);

/** ceil(n / k) for k >= 1. */
static inline size_t pose_ceil_div(size_t n, size_t k) { return n / k + (n % k != 0); }

/** Adaptive skip of slide 4: max(1, seq_len / (max_seq_len / 10)); max_seq_len >= 10. */
static inline size_t pose_adaptive_skip(size_t seq_len, size_t max_seq_len) {
  size_t k = seq_len / (max_seq_len / 10);
  return k < 1 ? 1 : k;
}

/* ---- attention module (src/attention.c) -------------------------------------------------- */
struct pose_attention_module {
  pose_attention_config cfg;
  size_t head_dim;
  float scale;
  /* POSE_LAYOUT_QKV_PROJ */
  float *qkv_w, *qkv_b, *proj_w, *proj_b;
  /* POSE_LAYOUT_QUERY_KEY_VALUE */
  float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;
};

/** Validates cfg (struct_size, every field) naming fn and the field on failure; copies it into
 *  *norm with defaults resolved. */
pose_status pose_attention_config_check(const char *fn, const pose_attention_config *cfg,
                                        pose_attention_config *norm);

/** A weight slot of a module: its state_dict name (relative), where it lives, how many floats. */
typedef struct pose_slot {
  const char *name;
  float **data;
  size_t count;
} pose_slot;

/** Fills slots (at most 6) for the module's layout; returns the count. */
size_t pose_attention_slots(pose_attention_module *a, pose_slot *slots);

/** Allocates the weight buffers of an attention module whose cfg/head_dim/scale are set.
 *  On failure everything allocated is freed. */
pose_status pose_attention_alloc(pose_attention_module *a);
/** Frees weight buffers (not the struct). */
void pose_attention_release(pose_attention_module *a);
/** Fills weights from rng as PyTorch's defaults. */
void pose_attention_init_random(pose_attention_module *a, pose_rng *rng);

/** Scratch of one forward of [batch, seq_len]: queries (then the attention context) for every
 *  position, keys and values for the kept positions, and a slot per worker. */
typedef struct pose_attn_plan {
  size_t batch, seq_len;
  size_t max_keys;    /* kept keys of the longest sequence */
  size_t workers;     /* pose_threads() when planned */
  size_t work_floats; /* per worker */
  size_t floats;      /* total */
} pose_attn_plan;
/** Plans a forward of [batch, seq_len] (POSE_ERR_SIZE_OVERFLOW naming pose_attention_forward
 *  when it does not fit). */
pose_status pose_attention_plan_for(const pose_attention_module *a, size_t batch, size_t seq_len,
                                    pose_attn_plan *plan);
/** Forward on validated arguments with caller scratch of plan->floats floats. Writes
 *  out[batch, seq_len, dim]; padded rows are zero. out may be x. */
void pose_attention_run(const pose_attention_module *a, const pose_attn_plan *plan, const float *x,
                        const size_t *lengths, float *out, float *scratch);

/** Validates a lengths array (each in 1..seq_len) naming fn on failure. NULL is fine. */
pose_status pose_check_lengths(const char *fn, const size_t *lengths, size_t batch, size_t seq_len);
static inline size_t pose_len_of(const size_t *lengths, size_t b, size_t seq_len) {
  return lengths ? lengths[b] : seq_len;
}

/* ---- safetensors (src/io/safetensors.c) ---------------------------------------------------
 * Parsing is all-or-nothing: on failure nothing stays allocated and *out is zeroed. */
#define POSE_ST_MAX_DIMS 8
typedef struct pose_st_tensor {
  char *name;
  size_t ndim;
  size_t shape[POSE_ST_MAX_DIMS];
  size_t count; /* product of shape (1 for a scalar) */
  float *data;  /* converted to float32, owned */
} pose_st_tensor;

typedef struct pose_st_meta {
  char *key;
  char *value;
} pose_st_meta;

typedef struct pose_st_file {
  pose_st_tensor *tensors;
  size_t num_tensors;
  pose_st_meta *meta;
  size_t num_meta;
} pose_st_file;

pose_status pose_st_parse(const void *data, size_t size, pose_st_file *out);
pose_status pose_st_read_file(const char *path, pose_st_file *out);
void pose_st_file_free(pose_st_file *f);
const pose_st_tensor *pose_st_find(const pose_st_file *f, const char *name);
/** Metadata value for key, or NULL. */
const char *pose_st_meta_get(const pose_st_file *f, const char *key);

/** A tensor to write. */
typedef struct pose_st_out {
  const char *name;
  const float *data;
  size_t ndim;
  size_t shape[POSE_ST_MAX_DIMS];
} pose_st_out;

/** Writes F32 tensors (in the given order) and string metadata (meta_kv[2*i] = key,
 *  meta_kv[2*i+1] = value) atomically: to "<path>.tmp-XXXXXX" then rename(2). */
pose_status pose_st_write_file(const char *path, const pose_st_out *tensors, size_t num_tensors,
                               const char *const *meta_kv, size_t num_meta);
/** The same bytes into a buffer from pose_malloc (*data, *size), for tests and fuzzing. */
pose_status pose_st_write_memory(const pose_st_out *tensors, size_t num_tensors,
                                 const char *const *meta_kv, size_t num_meta, void **data,
                                 size_t *size);

/* ---- models (src/model.c, src/model_forward.c, src/io/model_io.c) ------------------------- */
typedef struct pose_layer_weights {
  pose_attention_module attn; /* query/key/value layout, owned buffers */
  float *ff0_w, *ff0_b, *ff2_w, *ff2_b;
  float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
} pose_layer_weights;

/** One state_dict entry of a model: its full name, where its floats live, its shape. */
typedef struct pose_model_slot {
  char *name;
  float **data;
  size_t ndim;
  size_t shape[2];
  size_t count;
} pose_model_slot;

struct pose_model {
  pose_model_config cfg;
  pose_layer_weights *layers;
  float *embedding;       /* summarizer [vocab, dim] */
  float *in_w, *in_b;     /* classifier feature_extractor [dim, input_dim] */
  float *out_w, *out_b;   /* summarizer output_proj / classifier classifier */
  pose_model_slot *slots; /* state_dict order */
  size_t num_slots;
};

/** Validates a model config naming fn and the field; copies it with defaults resolved. */
pose_status pose_model_config_check(const char *fn, const pose_model_config *cfg,
                                    pose_model_config *norm);
/** Allocates a model (weights uninitialised) for a checked config. */
pose_status pose_model_new(const pose_model_config *cfg, pose_model **out);
/** Initialises weights as PyTorch's defaults from cfg.seed. */
void pose_model_init_random(pose_model *m);
/** Index of the slot named name, or num_slots. */
size_t pose_model_find_slot(const pose_model *m, const char *name);

/* ---- attention maps (src/attention_map.c) ----------------------------------------------------
 * Slide 12's map of one head for one sequence: probs[seq_len, num_keys] (softmax rows) and the
 * input positions of its columns. Materialises the whole map: for inspection, not the forward. */
/** Columns of the map for seq_len positions: ceil(seq_len / skip). */
size_t pose_attention_map_keys(const pose_attention_module *a, size_t seq_len);
/** Checks head < num_heads, the sizes (POSE_ERR_SIZE_OVERFLOW) and the buffer counts
 *  (POSE_ERR_BUFFER_TOO_SMALL) of a map, naming fn. */
pose_status pose_attention_map_check(const char *fn, const pose_attention_module *a, size_t seq_len,
                                     size_t head, size_t probs_count, size_t positions_count);
/** The map on arguments pose_attention_map_check accepted; x is [seq_len, dim]. Allocates
 *  scratch (POSE_ERR_OUT_OF_MEMORY, with probs and positions untouched). */
pose_status pose_attention_map_run(const pose_attention_module *a, const float *x, size_t seq_len,
                                   size_t head, float *probs, size_t *positions);

#endif /* POSE_INTERNAL_H */
