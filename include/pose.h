/*
 * pose.h -- the whole public API of libpose.
 *
 * libpose runs the building blocks of POSE ("positional skip-wise") transformers on the CPU:
 * full multi-head attention, skip-wise (strided) attention in which every query attends only to
 * positions 0, k, 2k, ..., the adaptive skip factor, sinusoidal positional encoding, the post-LN
 * POSE layer, the encoder stack, and two task models (a token summarizer and a music-genre
 * classifier). Matrix products go through cblas_sgemm (OpenBLAS). Weights trained with the
 * reference PyTorch modules load by their state_dict names (safetensors files) and give the same
 * outputs within float32 tolerance.
 *
 * Quick example (error handling shortened):
 *
 *     #include <pose.h>
 *
 *     pose_attention_config cfg;
 *     pose_attention_config_init(&cfg);      // slide 3 defaults: strided, dim 64, k = 2
 *     cfg.dim = 256;
 *     cfg.skip_factor = 10;
 *     pose_attention_module *attn = NULL;
 *     if (pose_attention_create(&cfg, &attn) != POSE_OK) {
 *         fprintf(stderr, "libpose: %s\n", pose_last_error());
 *         return 1;
 *     }
 *     // x and y are [batch, seq_len, dim] row-major float arrays owned by the caller
 *     pose_status st = pose_attention_forward(attn, x, batch, seq_len, NULL, y, y_count);
 *     pose_attention_free(attn);
 *
 * CONVENTIONS
 *   - Every function that can fail returns a pose_status. POSE_OK is 0; the other values are
 *     pinned and never renumbered. pose_last_error() gives a human-readable detail of the last
 *     failure on the calling thread (which argument, which tensor, what was expected).
 *   - libpose never aborts, exits or prints on bad input.
 *   - Tensors are row-major float32, batch first: [batch, seq_len, dim]. Linear weights use
 *     PyTorch's [out_features, in_features] layout, so state_dict tensors are used as they are.
 *   - Every buffer is passed with its length in elements (not bytes). A buffer shorter than the
 *     result is POSE_ERR_BUFFER_TOO_SMALL and nothing is written; the *_output_count functions
 *     tell how large a buffer must be.
 *   - Constructors return the handle through an out-parameter, set it to NULL on failure, and
 *     leave nothing allocated when they fail. pose_*_free(NULL) is a no-op.
 *   - Config structs start with struct_size and are filled by their *_init function; new fields
 *     are only ever added at the end, so a program built against an older header keeps working.
 *
 * OWNERSHIP
 *   The caller owns every buffer it passes in; libpose copies what it keeps (weights given to a
 *   constructor are copied). Handles own their weights and are released by their *_free function.
 *   Pointers returned by pose_*_string functions and pose_last_error() point to memory owned by
 *   libpose: static storage, or (pose_last_error) thread-local storage valid until the next
 *   failing libpose call on the same thread.
 *
 * THREAD SAFETY
 *   Handles are immutable after creation or loading. Any number of threads may call forward
 *   functions on the same handle at the same time: a forward call allocates and touches only its
 *   own scratch memory. Freeing a handle while another thread uses it is undefined.
 *   Process-wide settings -- pose_set_allocator() and pose_set_num_threads() -- are not
 *   synchronised with running calls: set them at start-up, before other threads use libpose.
 *   The error detail is per thread.
 */
#ifndef POSE_H
#define POSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Symbol visibility. The library is built with hidden visibility; only POSE_API symbols are
 * exported. Define POSE_STATIC when linking the static library on platforms that need it.
 */
#if defined(_WIN32) && !defined(POSE_STATIC)
#  ifdef POSE_BUILDING
#    define POSE_API __declspec(dllexport)
#  else
#    define POSE_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define POSE_API __attribute__((visibility("default")))
#else
#  define POSE_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Version. POSE_VERSION_NUMBER is MAJOR * 10000 + MINOR * 100 + PATCH. The ABI number is the
 * SONAME suffix (libpose.so.POSE_ABI_VERSION); it changes on any incompatible ABI change.
 */
#define POSE_VERSION_MAJOR 0
#define POSE_VERSION_MINOR 1
#define POSE_VERSION_PATCH 0
#define POSE_ABI_VERSION 0
#define POSE_VERSION_NUMBER \
  (POSE_VERSION_MAJOR * 10000 + POSE_VERSION_MINOR * 100 + POSE_VERSION_PATCH)
#define POSE_STRINGIFY_(x) #x
#define POSE_STRINGIFY(x) POSE_STRINGIFY_(x)
#define POSE_VERSION_STRING          \
  POSE_STRINGIFY(POSE_VERSION_MAJOR) \
  "." POSE_STRINGIFY(POSE_VERSION_MINOR) "." POSE_STRINGIFY(POSE_VERSION_PATCH)

/** Version of the library actually loaded, e.g. "0.1.0". Static string. Thread-safe. */
POSE_API const char *pose_version_string(void);
/** POSE_VERSION_NUMBER of the library actually loaded. Thread-safe. */
POSE_API unsigned pose_version_number(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes. The values are part of the ABI and never change.
 */
typedef enum pose_status {
  POSE_OK = 0,
  POSE_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, zero size, bad enum, bad config value */
  POSE_ERR_OUT_OF_MEMORY = 2,    /* an allocation failed */
  POSE_ERR_BUFFER_TOO_SMALL = 3, /* an output buffer is shorter than the result */
  POSE_ERR_SIZE_OVERFLOW = 4,    /* sizes whose product does not fit in size_t */
  POSE_ERR_UNSUPPORTED = 5,      /* valid request libpose does not implement (e.g. a dtype) */
  POSE_ERR_IO = 6,               /* a file could not be opened, read or written */
  POSE_ERR_FORMAT = 7,           /* a weight file is malformed */
  POSE_ERR_WEIGHTS = 8,          /* weights do not match the model: missing, extra, bad shape */
  POSE_ERR_INTERNAL = 9          /* a bug in libpose; please report it */
} pose_status;

/** Short static description of a status ("invalid argument", ...). Unknown values give
 *  "unknown status". Thread-safe. */
POSE_API const char *pose_status_string(pose_status status);

/** Detail of the last failure on the calling thread, e.g. "pose_attention_forward: out_count is
 *  1024, need 2048 ([batch 2, seq_len 4, dim 256])". "" when no call on this thread has failed.
 *  Successful calls do not clear it. Thread-local, owned by libpose. */
POSE_API const char *pose_last_error(void);

/* ---------------------------------------------------------------------------------------------
 * Process-wide settings.
 */

/** Memory allocator used for every allocation libpose makes (handles, weights, scratch).
 *  alloc must return memory aligned to at least `alignment` (a power of two, at most 64) or
 *  NULL; free receives exactly the pointers alloc returned. */
typedef struct pose_allocator {
  void *(*alloc)(size_t size, size_t alignment, void *user);
  void (*free)(void *ptr, void *user);
  void *user;
} pose_allocator;

/** Installs an allocator; NULL restores the default (aligned malloc/free). Must be called while
 *  no libpose handle exists and no call is running: memory is always released through the
 *  allocator that made it, so switching with live handles is rejected only where libpose can
 *  tell (POSE_ERR_INVALID_ARGUMENT when a handle exists). Not thread-safe. */
POSE_API pose_status pose_set_allocator(const pose_allocator *allocator);

/** Sets the number of threads libpose's forward calls use: n - 1 worker threads are started
 *  (the calling thread of a forward is the n-th) and OpenBLAS is set to one thread
 *  (openblas_set_num_threads(1)), because libpose calls OpenBLAS from inside its own workers
 *  and OpenBLAS threads there would oversubscribe the cores. n >= 1; n = 0 means "number of
 *  online CPUs". Until this is called libpose runs on the calling thread and leaves OpenBLAS's
 *  threading as the application set it; libpose never changes BLAS threading except through
 *  this call. Once it has been called, results are bitwise identical for any n (before, they
 *  depend on OpenBLAS's own threading, which libpose does not touch). With OpenBLAS's OpenMP
 *  build the thread count is per thread: call this from the thread that runs the forwards (or
 *  set OMP_NUM_THREADS=1). Process-wide, not thread-safe: call at start-up. */
POSE_API pose_status pose_set_num_threads(int n);
/** Thread count last set by pose_set_num_threads (1 until it is called). */
POSE_API int pose_get_num_threads(void);

/* ---------------------------------------------------------------------------------------------
 * Kernels. Plain functions on caller buffers. All are thread-safe and allocate nothing unless
 * stated. In-place operation is allowed where stated.
 */

/** y[rows, out_features] = x[rows, in_features] . weight^T + bias, weight in PyTorch
 *  [out_features, in_features] layout, bias of out_features or NULL. Computed by cblas_sgemm.
 *  x and y must not overlap. Errors: NULL pointers, zero sizes, size overflow, y_count short. */
POSE_API pose_status pose_linear(const float *x, size_t rows, size_t in_features,
                                 const float *weight, const float *bias, size_t out_features,
                                 float *y, size_t y_count);

/** LayerNorm over the last dimension, as torch.nn.LayerNorm(dim, eps): y = (x - mean) /
 *  sqrt(var + eps) * gamma + beta, biased variance. gamma/beta may be NULL (1 and 0). In-place
 *  (y == x) allowed. eps must be >= 0 and finite. */
POSE_API pose_status pose_layer_norm(const float *x, size_t rows, size_t dim, const float *gamma,
                                     const float *beta, float eps, float *y, size_t y_count);

/** y = max(x, 0) elementwise; in-place allowed. NaN stays NaN (as torch.relu). */
POSE_API pose_status pose_relu(const float *x, size_t count, float *y, size_t y_count);

/** Row-wise softmax of x[rows, cols] (max-subtracted, so large inputs do not overflow). A row
 *  whose entries are all -inf gives zeros, not NaN. In-place allowed. */
POSE_API pose_status pose_softmax(const float *x, size_t rows, size_t cols, float *y,
                                  size_t y_count);

/** The slide 5 sinusoidal encoding: pe[pos, 2i] = sin(pos * w_i), pe[pos, 2i+1] = cos(pos * w_i),
 *  w_i = exp(2i * -ln(10000) / dim), for positions 0..seq_len-1, computed in float32 the way
 *  PyTorch's PositionalEncoding does. dim must be even. pe is [seq_len, dim]. */
POSE_API pose_status pose_positional_encoding(size_t seq_len, size_t dim, float *pe,
                                              size_t pe_count);

/** Adds the slide 5 encoding to x[batch, seq_len, dim] in place (x + pe[:seq_len]). */
POSE_API pose_status pose_positional_encoding_add(float *x, size_t batch, size_t seq_len,
                                                  size_t dim);

/** The slide 5 encoding at arbitrary position ids: row i of pe[count, dim] is the encoding of
 *  position positions[i] (>= 0, below 2^24 so that it is exact in float32), computed as
 *  pose_positional_encoding computes row positions[i]. For models trained with shifted or
 *  skipped position ids (see pose_sample_position_ids). dim must be even. */
POSE_API pose_status pose_positional_encoding_at(const int64_t *positions, size_t count, size_t dim,
                                                 float *pe, size_t pe_count);

/** Position ids for PoSE training (Zhu et al., 2023, "Positional Skip-wise Training"): a
 *  training window of `window` tokens is split into num_chunks chunks of random lengths (each
 *  at least 1), and chunk i's ids are shifted by a skip bias u_i, with u_0 = 0 and u_i drawn
 *  uniformly from u_{i-1}..target_len-window, so that a model trained on short windows sees
 *  position ids up to target_len - 1. ids[window] are strictly increasing, start at 0 and stay
 *  below target_len. The same seed gives the same ids on every platform.
 *  Errors: window or num_chunks 0, num_chunks > window, target_len < window, ids_count short. */
POSE_API pose_status pose_sample_position_ids(size_t window, size_t target_len, size_t num_chunks,
                                              uint64_t seed, int64_t *ids, size_t ids_count);

/** The functional attention of slide 2: for each batch b,
 *  out[b] = softmax(scale * query[b] . key[b, P]^T) . value[b, P] with P = 0, k, 2k, ... < seq_len.
 *  query, key, value and out are [batch, seq_len, dim]. scale 1 reproduces slide 2 (which applies
 *  no scale). Keys and values are read in place (strided), not copied. Scratch per call is a
 *  few tiles per thread, independent of seq_len. Errors: NULL pointers, zero sizes,
 *  skip_factor 0, scale not finite,
 *  overflow, out_count short. */
POSE_API pose_status pose_attention(const float *query, const float *key, const float *value,
                                    size_t batch, size_t seq_len, size_t dim, size_t skip_factor,
                                    float scale, float *out, size_t out_count);

/* ---------------------------------------------------------------------------------------------
 * Attention modules.
 *
 * Which positions a query attends to (the mode) and how the weights are laid out (the layout)
 * are independent:
 *   POSE_LAYOUT_QKV_PROJ        slide 1 POSEAttention: fused qkv Linear [3*dim, dim] (bias
 *                               optional), multi-head, output proj Linear [dim, dim] with bias.
 *                               state_dict names: qkv.weight, qkv.bias, proj.weight, proj.bias.
 *   POSE_LAYOUT_QUERY_KEY_VALUE slide 3/4 SkipWiseAttention: separate query/key/value Linear
 *                               [dim, dim] with bias, no output projection. state_dict names:
 *                               query.weight, query.bias, key.weight, ..., value.bias.
 *   POSE_MODE_FULL       every query attends every position.
 *   POSE_MODE_STRIDED    every query attends positions 0, k, 2k, ... (slide 3). Keys and values
 *                        are projected only at those positions.
 *   POSE_MODE_ADAPTIVE   strided with k = max(1, seq_len / (max_seq_len / 10)) (slide 4),
 *                        integer divisions; max_seq_len < 10 is rejected (the seed divides by 0).
 *   POSE_MODE_LOCAL_STRIDED  query i attends the union of its window |i - j| <= window and the
 *                        strided positions 0, k, 2k, ... (k = skip_factor): local context plus a
 *                        sparse global view. Keys and values are projected at every position.
 *                        The softmax is exact over the union (each position counted once).
 *                        num_global > 0 adds global positions 0..num_global-1 (Longformer /
 *                        BigBird style, attended by every query, subject to causal) to the
 *                        union; num_global >= len makes every position global (full attention).
 *   POSE_MODE_HIERARCHICAL  `levels` strided levels with skip factors k, 2k, 4k, ...,
 *                        k * 2^(levels - 1) (k = skip_factor; k = 1 gives 1, 2, 4, ...), combined
 *                        exactly by merging the levels' softmax partials through log-sum-exp
 *                        (the LongNet dilated-attention combination): with lse_l and out_l each
 *                        level's log-sum-exp and softmax output, out = sum_l exp(lse_l - lse) *
 *                        out_l, lse = log sum_l exp(lse_l). This equals one softmax over the
 *                        MULTISET of the levels' positions: a position kept by c levels (0 is
 *                        kept by all) counts c times, i.e. its weight is c * exp(s) / Z. Keys and
 *                        values are projected at the level-0 positions 0, k, 2k, ... only (every
 *                        level's positions are a subset). levels = 1 is POSE_MODE_STRIDED.
 *   POSE_MODE_IMPORTANCE each block of 256 consecutive queries (the kernel's query block, counted
 *                        from position 0: the block size is part of the semantics) attends the
 *                        top_m positions with the highest importance score, the logit of the
 *                        block's mean query: score_j = scale * mean_q . k_j (per head, computed
 *                        in double), ties to the lower position. top_m = 0 means ceil(len / k),
 *                        the strided budget (so cost and quality compare at equal work); top_m
 *                        >= len is full attention. Keys and values are projected at every
 *                        position. With causal = 1 the candidates are the positions up to the
 *                        block's last query, and each row then masks the selected keys past
 *                        its own position; a row left with no visible key (position 0 need not
 *                        be selected) outputs zeros.
 * causal = 1 applies on top of any mode: query i attends only positions j <= i (the strided
 * and hierarchical modes keep position 0, so no query is left with nothing to attend; an
 * importance row may be, and gives zeros).
 * Scores are scaled by 1/sqrt(dim / num_heads) unless config.scale is set; with one head this is
 * the seed's 1/sqrt(dim).
 */
typedef enum pose_attention_mode {
  POSE_MODE_FULL = 0,
  POSE_MODE_STRIDED = 1,
  POSE_MODE_ADAPTIVE = 2,
  POSE_MODE_LOCAL_STRIDED = 3,
  POSE_MODE_HIERARCHICAL = 4,
  POSE_MODE_IMPORTANCE = 5
} pose_attention_mode;

typedef enum pose_attention_layout {
  POSE_LAYOUT_QKV_PROJ = 0,
  POSE_LAYOUT_QUERY_KEY_VALUE = 1
} pose_attention_layout;

/** Static name of a mode ("full", "strided", "adaptive", "local_strided", "hierarchical",
 *  "importance") or NULL for an unknown value. */
POSE_API const char *pose_attention_mode_string(pose_attention_mode mode);

typedef struct pose_attention_config {
  size_t struct_size;           /* sizeof(pose_attention_config), set by _init */
  pose_attention_mode mode;     /* default POSE_MODE_STRIDED */
  pose_attention_layout layout; /* default POSE_LAYOUT_QUERY_KEY_VALUE */
  size_t dim;                   /* model width; default 64 */
  size_t num_heads;             /* must divide dim; default 1 */
  size_t skip_factor;           /* POSE_MODE_STRIDED, >= 1; default 2 */
  size_t max_seq_len;           /* POSE_MODE_ADAPTIVE, >= 10; default 1000 */
  int qkv_bias;                 /* POSE_LAYOUT_QKV_PROJ only: qkv has a bias; default 0 */
  float scale;                  /* score scale; 0 = 1/sqrt(dim / num_heads) */
  uint64_t seed;                /* for pose_attention_create's initialisation; default 0 */
  /* Added after the first release (an older caller's smaller struct_size reads them as 0). */
  size_t window;     /* POSE_MODE_LOCAL_STRIDED: half-width |i - j| <= window, >= 1; default 0 */
  int causal;        /* 1: query i attends only positions j <= i; 0 (default) or 1 */
  size_t levels;     /* POSE_MODE_HIERARCHICAL: number of levels, 1..64; default 0 */
  size_t top_m;      /* POSE_MODE_IMPORTANCE: keys per query block; 0 (default) = ceil(len / k) */
  size_t num_global; /* POSE_MODE_LOCAL_STRIDED: positions 0..num_global-1 attended by every
                        query; default 0 (none); non-zero is rejected for the other modes */
} pose_attention_config;

/** Fills cfg with the defaults above (the slide 3 example module). */
POSE_API void pose_attention_config_init(pose_attention_config *cfg);

typedef struct pose_attention_module pose_attention_module;

/** Named float32 tensor passed to a constructor; data is copied, count is in elements. */
typedef struct pose_weight {
  const char *name;
  const float *data;
  size_t count;
} pose_weight;

/** Creates a module with weights drawn as PyTorch's defaults draw them (nn.Linear: weight and
 *  bias uniform in +-1/sqrt(in_features)), from a deterministic generator seeded by cfg->seed:
 *  the same config gives the same weights on every machine. Errors: bad config
 *  (POSE_ERR_INVALID_ARGUMENT with the field named), POSE_ERR_OUT_OF_MEMORY. */
POSE_API pose_status pose_attention_create(const pose_attention_config *cfg,
                                           pose_attention_module **out);

/** Creates a module from caller weights named as in the module's state_dict (see above).
 *  Every expected tensor must be given exactly once with the expected element count, and no
 *  other: otherwise POSE_ERR_WEIGHTS naming the tensor. Weights are copied. */
POSE_API pose_status pose_attention_create_from_weights(const pose_attention_config *cfg,
                                                        const pose_weight *weights,
                                                        size_t num_weights,
                                                        pose_attention_module **out);

/** Frees the module; NULL is a no-op. */
POSE_API void pose_attention_free(pose_attention_module *attn);

/** Copies the module's configuration (as created, defaults resolved) into *cfg. Set
 *  cfg->struct_size = sizeof *cfg first (or call pose_attention_config_init). */
POSE_API pose_status pose_attention_get_config(const pose_attention_module *attn,
                                               pose_attention_config *cfg);

/** Looks up a weight by state_dict name; *data points into the module (valid until it is
 *  freed), *count is its element count. POSE_ERR_WEIGHTS for an unknown name. */
POSE_API pose_status pose_attention_get_weight(const pose_attention_module *attn, const char *name,
                                               const float **data, size_t *count);

/** Skip factor the module uses for a sequence of seq_len positions (1 for full attention). */
POSE_API pose_status pose_attention_skip_for(const pose_attention_module *attn, size_t seq_len,
                                             size_t *skip_factor);

/** out[batch, seq_len, dim] = attention(x[batch, seq_len, dim]).
 *  lengths: NULL when every sequence is seq_len long; otherwise lengths[b] in 1..seq_len gives
 *  sequence b's true length: positions at or past it are padding, never attended, and their
 *  output rows are zero; each sequence's result equals running it alone at its own length
 *  (including the adaptive skip factor). Thread-safe on a shared module. */
POSE_API pose_status pose_attention_forward(const pose_attention_module *attn, const float *x,
                                            size_t batch, size_t seq_len, const size_t *lengths,
                                            float *out, size_t out_count);

/* ---------------------------------------------------------------------------------------------
 * Attention maps (slide 12): what a query actually attends to, for visualisation.
 *
 * The map of one head for one sequence is probs[seq_len, num_keys], row i holding query i's
 * attention weights over the attended positions, and positions[num_keys], the input positions
 * the columns stand for (0, k, 2k, ... for strided attention; every position for full and
 * local_strided and importance; 0, k, 2k, ... for hierarchical). A position a query does not
 * attend (outside its window and neither strided nor global, not selected by its block, or past
 * it when causal) has weight 0 in its row. Hierarchical rows give a position kept by c levels c
 * times its single weight (the multiset softmax). Rows sum to 1, except an importance row that
 * attends nothing (all 0).
 */

/** Number of columns (attended positions) of the map for a sequence of seq_len positions. */
POSE_API pose_status pose_attention_map_size(const pose_attention_module *attn, size_t seq_len,
                                             size_t *num_keys);

/** The map of head `head` (< num_heads) for one sequence x[seq_len, dim]. probs needs
 *  seq_len * num_keys elements and positions num_keys. Thread-safe on a shared module. */
POSE_API pose_status pose_attention_map(const pose_attention_module *attn, const float *x,
                                        size_t seq_len, size_t head, float *probs,
                                        size_t probs_count, size_t *positions,
                                        size_t positions_count);

/* ---------------------------------------------------------------------------------------------
 * Complexity (slide 7). Counts for one forward call, computed exactly (not asymptotically).
 * keys_per_query is ceil(seq_len / k), which is what strided attention attends; slide 7's
 * seq_len * (seq_len // k) undercounts by up to seq_len pairs when k does not divide seq_len.
 * When queries attend different numbers of positions (causal attention, POSE_MODE_LOCAL_STRIDED)
 * attended_pairs is the exact sum over queries and keys_per_query its average rounded up;
 * POSE_MODE_LOCAL_STRIDED counts the union of window, strided and global positions (each once)
 * and projects keys and values at every position.
 * POSE_MODE_HIERARCHICAL counts each level's kept positions per query (a position kept by c
 * levels counts c times, as the softmax does; causal clipped) and projects keys and values at the
 * level-0 positions. POSE_MODE_IMPORTANCE counts min(m, seq_len) keys per query (m = top_m, or
 * ceil(seq_len / k) for 0) and projects keys and values at every position; with causal the
 * visible count of a row depends on the data (which keys are selected), so the cost reports the
 * upper bound min(m, seq_len) per query.
 * A FLOP is one multiply or one add (a multiply-add is 2).
 */
typedef struct pose_cost {
  uint64_t skip_factor;    /* k used for this length (1 for full) */
  uint64_t keys_per_query; /* positions each query attends (average, rounded up, if varying) */
  uint64_t attended_pairs; /* batch * heads * (sum over queries of positions attended) */
  double attention_flops;  /* score and weighted-sum products: 4 * pairs * head_dim */
  double projection_flops; /* Q, K, V (kept rows only) and output projections */
  double total_flops;      /* attention + projection (softmax not counted) */
} pose_cost;

POSE_API pose_status pose_attention_cost(const pose_attention_config *cfg, size_t batch,
                                         size_t seq_len, pose_cost *cost);

/* ---------------------------------------------------------------------------------------------
 * Layers, encoders and task models (slides 6, 9, 10, 11) share one handle type, pose_model,
 * whose kind says what it is. One handle type means one loader: a safetensors file names its
 * kind in its metadata (or the kind is inferred from its tensor names), and pose_model_load
 * returns the right thing without the caller knowing in advance.
 *
 *   POSE_MODEL_LAYER       POSELayer (slide 6): x = LN1(x + attn(x)); x = LN2(x + FF(x)),
 *                          FF = Linear(dim, ff_dim) - ReLU - Linear(ff_dim, dim). Input and
 *                          output [batch, seq_len, dim].
 *   POSE_MODEL_ENCODER     POSETransformerEncoder (slide 9): num_layers layers.
 *   POSE_MODEL_SUMMARIZER  POSESummarizer (slide 10): Embedding(vocab_size, dim), encoder with
 *                          ff_dim 4*dim, output_proj Linear(dim, vocab_size). Input token ids
 *                          [batch, seq_len] (int64), output logits [batch, seq_len, vocab_size].
 *   POSE_MODEL_CLASSIFIER  POSEMusicClassifier (slide 11): feature_extractor Linear(input_dim,
 *                          dim), encoder with ff_dim 4*dim, mean over positions, classifier
 *                          Linear(dim, num_classes). Input [batch, seq_len, input_dim], output
 *                          logits [batch, num_classes].
 * Layer attention is the SkipWiseAttention of the seed (POSE_LAYOUT_QUERY_KEY_VALUE), with the
 * mode, skip factor and head count of the config.
 */
typedef enum pose_model_kind {
  POSE_MODEL_LAYER = 1,
  POSE_MODEL_ENCODER = 2,
  POSE_MODEL_SUMMARIZER = 3,
  POSE_MODEL_CLASSIFIER = 4
} pose_model_kind;

/** Static name of a kind ("layer", "encoder", "summarizer", "classifier") or NULL. */
POSE_API const char *pose_model_kind_string(pose_model_kind kind);

typedef struct pose_model_config {
  size_t struct_size; /* sizeof(pose_model_config), set by _init */
  pose_model_kind kind;
  size_t dim;               /* model width (embed_dim, hidden_dim) */
  size_t ff_dim;            /* feed-forward width; 0 = 4 * dim, what the seed's models use */
  size_t num_layers;        /* 1 for POSE_MODEL_LAYER */
  size_t num_heads;         /* attention heads, must divide dim; seed: 1 */
  pose_attention_mode mode; /* seed: POSE_MODE_STRIDED */
  size_t skip_factor;       /* POSE_MODE_STRIDED */
  size_t max_seq_len;       /* POSE_MODE_ADAPTIVE, >= 10 */
  size_t vocab_size;        /* POSE_MODEL_SUMMARIZER */
  size_t input_dim;         /* POSE_MODEL_CLASSIFIER: features per frame (e.g. 128 mel bins) */
  size_t num_classes;       /* POSE_MODEL_CLASSIFIER: genres */
  int positional_encoding;  /* summarizer/classifier: add slide 5 encoding after the input
                                projection; 0 reproduces the seed, which omits it */
  float layer_norm_eps;     /* 1e-5 as nn.LayerNorm */
  uint64_t seed;            /* initialisation seed for pose_model_create */
  /* Added after the first release (an older caller's smaller struct_size reads them as 0). */
  size_t window;     /* POSE_MODE_LOCAL_STRIDED: half-width of the local window, >= 1 */
  int causal;        /* 1: every layer's attention is causal (query i sees positions <= i) */
  size_t levels;     /* POSE_MODE_HIERARCHICAL: 1..64 levels */
  size_t top_m;      /* POSE_MODE_IMPORTANCE: keys per query block; 0 = ceil(len / k) */
  size_t num_global; /* POSE_MODE_LOCAL_STRIDED: global positions 0..num_global-1; default 0 */
} pose_model_config;

/** Fills cfg with the seed's example sizes for kind: layer dim 64, ff 256, k 2 (slide 6);
 *  encoder dim 256, ff 1024, 6 layers, k 2 (slide 9); summarizer vocab 30000, dim 256, 6
 *  layers, k 2 (slide 10); classifier input 128, dim 256, 4 layers, k 2, 10 genres (slide 11).
 *  The summarizer and classifier get ff_dim 0 (4 * dim, following dim when it is changed).
 *  POSE_ERR_INVALID_ARGUMENT for an unknown kind. */
POSE_API pose_status pose_model_config_init(pose_model_config *cfg, pose_model_kind kind);

typedef struct pose_model pose_model;

/** Creates a model with PyTorch-default initialisation (Linear uniform +-1/sqrt(in),
 *  Embedding standard normal, LayerNorm 1 and 0) from a deterministic generator seeded by
 *  cfg->seed. */
POSE_API pose_status pose_model_create(const pose_model_config *cfg, pose_model **out);

/** Creates a model from caller weights named as in the PyTorch module's state_dict (for example
 *  "pose_encoder.layers.0.attn.query.weight"). Strict like load_state_dict(strict=True). */
POSE_API pose_status pose_model_create_from_weights(const pose_model_config *cfg,
                                                    const pose_weight *weights, size_t num_weights,
                                                    pose_model **out);

/** Frees the model; NULL is a no-op. */
POSE_API void pose_model_free(pose_model *model);

/** Copies the model's configuration, with defaults resolved (ff_dim as used), into *cfg. Set
 *  cfg->struct_size = sizeof *cfg first (the kind is not needed):
 *      pose_model_config cfg = {.struct_size = sizeof cfg};
 *  A smaller struct_size from an older program receives the fields it knows. */
POSE_API pose_status pose_model_get_config(const pose_model *model, pose_model_config *cfg);

/** Looks up a weight by state_dict name (see pose_attention_get_weight). */
POSE_API pose_status pose_model_get_weight(const pose_model *model, const char *name,
                                           const float **data, size_t *count);

/** Number of tensors in the model's state_dict and the name of tensor i (in state_dict
 *  order; static for the model's lifetime). */
POSE_API size_t pose_model_num_weights(const pose_model *model);
POSE_API const char *pose_model_weight_name(const pose_model *model, size_t index);

/** What one layer of the model does; layer_index < num_layers. Set struct_size first:
 *      pose_layer_info info = {.struct_size = sizeof info};  */
typedef struct pose_layer_info {
  size_t struct_size; /* sizeof(pose_layer_info) as the caller knows it */
  pose_attention_mode mode;
  size_t skip_factor; /* configured k (strided); 1 for full; adaptive: see max_seq_len */
  size_t max_seq_len;
  size_t num_heads;
  size_t dim;
  size_t ff_dim;
  /* Added after the first release; an older caller's smaller struct does not receive them. */
  size_t window; /* POSE_MODE_LOCAL_STRIDED window (0 for the other modes) */
  int causal;
  size_t levels;     /* POSE_MODE_HIERARCHICAL levels (0 for the other modes) */
  size_t top_m;      /* POSE_MODE_IMPORTANCE top_m as configured (0 for the other modes) */
  size_t num_global; /* POSE_MODE_LOCAL_STRIDED global positions (0 for the other modes) */
} pose_layer_info;

POSE_API pose_status pose_model_layer_info(const pose_model *model, size_t layer_index,
                                           pose_layer_info *info);

/** Number of output elements forward produces for this batch shape:
 *  layer/encoder batch*seq_len*dim, summarizer batch*seq_len*vocab_size, classifier
 *  batch*num_classes. POSE_ERR_SIZE_OVERFLOW when it does not fit. */
POSE_API pose_status pose_model_output_count(const pose_model *model, size_t batch, size_t seq_len,
                                             size_t *count);

/** Forward for float inputs (layer, encoder: [batch, seq_len, dim]; classifier:
 *  [batch, seq_len, input_dim]). lengths as in pose_attention_forward: padded positions are
 *  never attended to, never pooled, and give zero rows; each sequence equals running it alone.
 *  POSE_ERR_INVALID_ARGUMENT for a summarizer (use pose_model_forward_tokens). Thread-safe. */
POSE_API pose_status pose_model_forward(const pose_model *model, const float *input, size_t batch,
                                        size_t seq_len, const size_t *lengths, float *out,
                                        size_t out_count);

/** Forward for the summarizer: tokens [batch, seq_len] in 0..vocab_size-1 (positions past a
 *  sequence's length are ignored). An id out of range is POSE_ERR_INVALID_ARGUMENT naming its
 *  position, never an out-of-bounds read. Thread-safe. */
POSE_API pose_status pose_model_forward_tokens(const pose_model *model, const int64_t *tokens,
                                               size_t batch, size_t seq_len, const size_t *lengths,
                                               float *out, size_t out_count);

/** Top-k helper: indices (and values, if non-NULL) of the k largest of scores[count], largest
 *  first, ties to the lower index. k <= count. For classifier logits (or probabilities from
 *  pose_softmax) per batch row. */
POSE_API pose_status pose_top_k(const float *scores, size_t count, size_t k, size_t *indices,
                                float *values);

/* Attention maps of a model's layers (see the attention-map section above). */

/** Number of columns of the map of layer layer_index of a model for seq_len positions. */
POSE_API pose_status pose_model_attention_map_size(const pose_model *model, size_t layer_index,
                                                   size_t seq_len, size_t *num_keys);

/** The map of head `head` of layer layer_index of a model, for one input sequence given as to
 *  pose_model_forward (input, [seq_len, width]) or, for a summarizer, pose_model_forward_tokens
 *  (tokens, [seq_len]); the other pointer is NULL. The layers before layer_index run first so
 *  that the map is the one the model computes. Thread-safe on a shared model. */
POSE_API pose_status pose_model_attention_map(const pose_model *model, size_t layer_index,
                                              const float *input, const int64_t *tokens,
                                              size_t seq_len, size_t head, float *probs,
                                              size_t probs_count, size_t *positions,
                                              size_t positions_count);

/* ---------------------------------------------------------------------------------------------
 * Weight files (safetensors).
 *
 * pose_model_save writes the state_dict tensors as F32 with the config in __metadata__:
 * "kind" plus the seed constructor's argument names (layer: dim, skip_factor, ff_dim; encoder:
 * dim, ff_dim, num_layers, skip_factor; summarizer: vocab_size, embed_dim, num_layers,
 * skip_factor; classifier: input_dim, hidden_dim, num_layers, skip_factor, num_genres) and
 * libpose's additions ("pose.mode", "pose.num_heads", "pose.max_seq_len",
 * "pose.positional_encoding", "pose.layer_norm_eps", "pose.window", "pose.causal",
 * "pose.levels", "pose.top_m", "pose.num_global", "pose.version"). A file without
 * "pose.window", "pose.causal", "pose.levels", "pose.top_m" or "pose.num_global" takes them from
 * the options (default 0).
 * pose_model_load accepts F32, F16 and BF16 tensors (converted to float32). A file without
 * metadata -- safetensors.torch.save_file(model.state_dict(), path) -- has its kind inferred
 * from the tensor names and its sizes from the tensor shapes; what shapes cannot tell (mode,
 * skip factor, heads, positional encoding) comes from the options.
 */
typedef struct pose_load_options {
  size_t struct_size;       /* sizeof(pose_load_options), set by _init */
  pose_attention_mode mode; /* used when the file does not say; default POSE_MODE_STRIDED */
  size_t skip_factor;       /* used when the file does not say; 0 = required from the file */
  size_t max_seq_len;       /* used when the file does not say (adaptive) */
  size_t num_heads;         /* used when the file does not say; default 1 */
  int positional_encoding;  /* used when the file does not say; default 0 */
  /* Added after the first release (an older caller's smaller struct_size reads them as 0). */
  size_t window;     /* used when the file does not say; default 0 */
  int causal;        /* used when the file does not say; default 0 */
  size_t levels;     /* used when the file does not say; default 0 */
  size_t top_m;      /* used when the file does not say; default 0 */
  size_t num_global; /* used when the file does not say; default 0 */
} pose_load_options;

POSE_API void pose_load_options_init(pose_load_options *opts);

/** Loads a model from a safetensors file. opts may be NULL (defaults). Every check of the
 *  safetensors format is applied before anything is trusted; errors name the tensor and what
 *  was expected (POSE_ERR_FORMAT, POSE_ERR_WEIGHTS, POSE_ERR_IO, POSE_ERR_UNSUPPORTED). */
POSE_API pose_status pose_model_load(const char *path, const pose_load_options *opts,
                                     pose_model **out);

/** As pose_model_load, from a caller buffer holding the file's bytes (not kept). */
POSE_API pose_status pose_model_load_memory(const void *data, size_t size,
                                            const pose_load_options *opts, pose_model **out);

/** Saves the model as safetensors. The file is written to a temporary name beside path and
 *  renamed over it only when complete, so a failure never leaves a half-written file in place
 *  of a good one. */
POSE_API pose_status pose_model_save(const pose_model *model, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* POSE_H */
