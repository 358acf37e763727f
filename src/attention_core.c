/* Tiled scaled dot-product attention with an online softmax (FlashAttention-2 on the CPU).
 *
 * A task is one block of POSE_ATTN_QBLOCK queries of one head of one sequence. It walks the
 * kept keys in tiles of POSE_ATTN_KTILE:
 *   S = scale * Q_blk . K_tile^T                 sgemm; strided keys read in place (ldk)
 *   per row: m' = max(m, max S), S = exp(S - m'), l = l * exp(m - m') + sum S,
 *            O *= exp(m - m')                     one fused vectorised pass (softmax_simd.c)
 *   O += S . V_tile                               sgemm, beta = 1
 * and finally out = O / l. The score matrix never exists beyond one tile, so a worker's scratch
 * is POSE_ATTN_QBLOCK x (tile + head_dim) floats whatever the sequence length (under 1 MiB at
 * head_dim 256).
 *
 * Tile sizes, measured on the 2-core Zen 5 VM (OpenBLAS 0.3.21 Haswell kernels, one thread per
 * worker): the two tile GEMMs of head_dim 32 run at 91-97 GFLOP/s on one core against 103 for a
 * 2048^3 sgemm; 256 x 512 is the fastest of 64/128/256 x 256/512/1024 (+4-5% over 128 rows,
 * which repack each key tile twice as often), and slide 8 full attention follows (0.64 s
 * against 0.67 s, medians of 5). The 512 KiB score tile stays in the 1 MiB L2 between the GEMM
 * that writes it, the row pass and the GEMM that reads it; 1024-key tiles were slower.
 *
 * Every block and tile boundary is counted from the sequence's first query and first kept key,
 * so a sequence gives the same bits alone, in a padded batch, and on any number of threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pose_internal.h"

#ifndef POSE_ATTN_QBLOCK /* overridable for tuning runs: -DPOSE_ATTN_QBLOCK=... */
#  define POSE_ATTN_QBLOCK 256
#endif
#ifndef POSE_ATTN_KTILE
#  define POSE_ATTN_KTILE 512
#endif

/* Floats rounded up to a 64-byte multiple, so every part of a worker's scratch stays aligned. */
static size_t align16(size_t floats) { return (floats + 15) & ~(size_t)15; }

size_t pose_attention_work_floats(size_t head_dim, size_t max_keys) {
  size_t kt = max_keys < POSE_ATTN_KTILE ? max_keys : POSE_ATTN_KTILE;
  if (kt == 0) kt = 1;
  size_t s, o;
  if (!pose_mul(POSE_ATTN_QBLOCK, kt, &s) || !pose_mul(POSE_ATTN_QBLOCK, head_dim, &o) ||
      o > SIZE_MAX / 2) {
    return 0;
  }
  /* scores, output accumulator, running max (float) and running sum (double) per row */
  return align16(s) + align16(o) + align16(POSE_ATTN_QBLOCK) + align16(2 * POSE_ATTN_QBLOCK);
}

/* Importance selection scratch: the block's mean query (doubles), every candidate's score
 * (doubles), the candidate indices (size_t, at most 8 bytes) and the gathered keys and values. */
_Static_assert(sizeof(size_t) <= 2 * sizeof(float), "size_t indices are stored in 2 floats");
size_t pose_importance_work_floats(size_t head_dim, size_t max_keys, size_t top_m) {
  size_t top = top_m < max_keys ? top_m : max_keys, g, mk, t;
  if (!pose_mul(top, head_dim, &g) || g > SIZE_MAX / 8 || max_keys > SIZE_MAX / 8 ||
      head_dim > SIZE_MAX / 8) {
    return 0;
  }
  mk = align16(2 * max_keys);
  t = align16(2 * head_dim) + 2 * mk;
  if (!pose_add(t, 2 * align16(g), &t)) return 0;
  return t;
}

/* Order of the importance selection: higher score first, ties (and NaN against NaN) to the
 * lower position, NaN after every number. */
static bool ranks_before(const double *s, size_t a, size_t b) {
  double sa = s[a], sb = s[b];
  const bool na = sa != sa, nb = sb != sb;
  if (na || nb) return na && nb ? a < b : nb;
  if (sa != sb) return sa > sb;
  return a < b;
}

static void swap_idx(size_t *x, size_t i, size_t j) {
  size_t t = x[i];
  x[i] = x[j];
  x[j] = t;
}

/* Partial selection (quickselect, middle pivot): afterwards idx[0..top) holds the top best of
 * idx[0..n) in some order. The order is total, so the set is unique. */
static void select_top(size_t *idx, size_t n, size_t top, const double *s) {
  size_t lo = 0, hi = n;
  while (hi - lo > 1) {
    swap_idx(idx, lo + (hi - lo) / 2, hi - 1);
    const size_t pivot = idx[hi - 1];
    size_t store = lo;
    for (size_t i = lo; i < hi - 1; i++) {
      if (ranks_before(s, idx[i], pivot)) swap_idx(idx, i, store++);
    }
    swap_idx(idx, store, hi - 1);
    if (top == store || top == store + 1) return;
    if (top < store) {
      hi = store;
    } else {
      lo = store + 1;
    }
  }
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

size_t pose_importance_select(const float *q, size_t ldq, size_t m, const float *k, size_t ldk,
                              size_t ncand, size_t hd, float scale, size_t top_m, double *mean,
                              double *scores, size_t *sel) {
  for (size_t c = 0; c < hd; c++) mean[c] = 0.0;
  for (size_t r = 0; r < m; r++) {
    for (size_t c = 0; c < hd; c++) mean[c] += (double)q[r * ldq + c];
  }
  for (size_t c = 0; c < hd; c++) mean[c] /= (double)m;
  for (size_t j = 0; j < ncand; j++) {
    double acc = 0.0;
    for (size_t c = 0; c < hd; c++) acc += mean[c] * (double)k[j * ldk + c];
    scores[j] = (double)scale * acc;
    sel[j] = j;
  }
  const size_t top = top_m < ncand ? top_m : ncand;
  if (top < ncand) {
    select_top(sel, ncand, top, scores);
    qsort(sel, top, sizeof *sel, cmp_size);
  }
  return top;
}

size_t pose_attention_tile_queries(void) { return POSE_ATTN_QBLOCK; }

size_t pose_attention_tile_keys(void) { return POSE_ATTN_KTILE; }

size_t pose_attention_blocks(size_t nq) { return pose_ceil_div(nq, POSE_ATTN_QBLOCK); }

/* Multiplies the first cols entries of row by f. */
static void scale_row(float *row, size_t cols, float f) {
  for (size_t c = 0; c < cols; c++) row[c] *= f;
}

/* out rows = O rows / l; a row that attended nothing (l == 0) is zero. */
static void write_output(const pose_attn_head *h, size_t i0, size_t m, const float *o,
                         const double *l) {
  const size_t hd = h->head_dim;
  for (size_t r = 0; r < m; r++) {
    float *dst = h->out + (i0 + r) * h->ldo;
    double inv = l[r] > 0.0 ? 1.0 / l[r] : 0.0;
    for (size_t c = 0; c < hd; c++) dst[c] = (float)(o[r * hd + c] * inv);
  }
}

/* One run of keys through a block's online softmax: nkeys keys, key j at k + j * ldk (or
 * column j when transposed) and at input position pos0 + j * step, or pos[j] when pos is given
 * (ascending: gathered keys). kind says which mask
 * applies on top of the causal one: every key, only keys outside the row's window (the strided
 * keys of local attention; those inside are the window pass's), only keys inside it, or only
 * keys neither inside it nor strided (the global keys; the others are the first two passes'). */
enum { PASS_ALL = 0, PASS_OUTSIDE_WINDOW = 1, PASS_INSIDE_WINDOW = 2, PASS_GLOBAL = 3 };
typedef struct key_pass {
  const float *k, *v;
  size_t ldk, ldv, nkeys, pos0, step;
  int kind;
  const size_t *pos;
} key_pass;

static size_t pos_of(const key_pass *p, size_t j) {
  return p->pos != NULL ? p->pos[j] : p->pos0 + j * p->step;
}

/* True when query position i must not see key position p. */
static bool masked(const pose_attn_head *h, int kind, size_t i, size_t p) {
  if (h->causal && p > i) return true;
  if (kind == PASS_ALL) return false;
  bool inside = (p <= i ? i - p : p - i) <= h->window;
  if (kind == PASS_GLOBAL) return inside || p % (h->skip ? h->skip : 1) == 0;
  return kind == PASS_OUTSIDE_WINDOW ? inside : !inside;
}

/* Block state: m query rows from i0, scores s, accumulator o, running max mx and sum l.
 * *first: O has not been written yet (the next tile's product overwrites it, beta 0). */
typedef struct block_state {
  size_t i0, m;
  const float *q;
  float *s, *o, *mx;
  double *l;
  bool first;
} block_state;

static void run_pass(const pose_attn_head *h, const key_pass *p, block_state *b) {
  const size_t hd = h->head_dim, i0 = b->i0, i_last = b->i0 + b->m - 1;
  for (size_t j0 = 0; j0 < p->nkeys; j0 += POSE_ATTN_KTILE) {
    size_t nk = p->nkeys - j0 < POSE_ATTN_KTILE ? p->nkeys - j0 : POSE_ATTN_KTILE;
    const size_t p_first = pos_of(p, j0);
    if (h->causal) {
      if (p_first > i_last) break; /* this tile and every later one is past every query */
      if (p->pos != NULL) {
        while (p->pos[j0 + nk - 1] > i_last) nk--; /* stops at p_first <= i_last */
      } else {
        size_t visible = (i_last - p_first) / p->step + 1;
        if (visible < nk) nk = visible;
      }
    }
    const size_t p_last = pos_of(p, j0 + nk - 1);
    /* Strided or global keys all inside every row's window are the window pass's. */
    if ((p->kind == PASS_OUTSIDE_WINDOW || p->kind == PASS_GLOBAL) &&
        p_first + h->window >= i_last && p_last <= i0 + h->window) {
      continue;
    }
    const bool masking = p->kind != PASS_ALL || (h->causal && p_last > i0);
    float *s = b->s;
    if (h->kv_transposed) {
      pose_sgemm(false, false, b->m, nk, hd, h->scale, b->q, h->ldq, p->k + j0, p->ldk, 0.0f, s,
                 nk);
    } else {
      pose_sgemm(false, true, b->m, nk, hd, h->scale, b->q, h->ldq, p->k + j0 * p->ldk, p->ldk,
                 0.0f, s, nk);
    }
    for (size_t r = 0; r < b->m; r++) {
      float *row = s + r * nk;
      if (masking) {
        for (size_t c = 0; c < nk; c++) {
          if (masked(h, p->kind, i0 + r, pos_of(p, j0 + c))) row[c] = -INFINITY;
        }
      }
      /* A row whose scores are all -inf here leaves its max, sum and accumulator as they are
       * (weights 0, alpha 1). */
      float alpha = pose_online_softmax_row(row, nk, &b->mx[r], &b->l[r]);
      if (!b->first && alpha != 1.0f) scale_row(b->o + r * hd, hd, alpha);
    }
    const float beta = b->first ? 0.0f : 1.0f;
    if (h->kv_transposed) {
      pose_sgemm(false, true, b->m, hd, nk, 1.0f, s, nk, p->v + j0, p->ldv, beta, b->o, hd);
    } else {
      pose_sgemm(false, false, b->m, hd, nk, 1.0f, s, nk, p->v + j0 * p->ldv, p->ldv, beta, b->o,
                 hd);
    }
    b->first = false;
  }
}

void pose_attention_block(const pose_attn_head *h, size_t block, float *work) {
  const size_t hd = h->head_dim, i0 = block * POSE_ATTN_QBLOCK;
  if (i0 >= h->nq) return;
  const size_t m = h->nq - i0 < POSE_ATTN_QBLOCK ? h->nq - i0 : POSE_ATTN_QBLOCK;
  const size_t kt = h->nkeys < POSE_ATTN_KTILE ? h->nkeys : POSE_ATTN_KTILE;
  block_state b = {.i0 = i0, .m = m, .q = h->q + i0 * h->ldq, .s = work, .first = true};
  b.o = b.s + align16(POSE_ATTN_QBLOCK * (kt ? kt : 1));
  b.mx = b.o + align16(POSE_ATTN_QBLOCK * hd);
  /* Untyped scratch from pose_alloc_floats, used only as doubles here (64-byte aligned). */
  b.l = (double *)(void *)(b.mx + align16(POSE_ATTN_QBLOCK));
  for (size_t r = 0; r < m; r++) {
    b.mx[r] = -INFINITY;
    b.l[r] = 0.0;
  }
  const size_t skip = h->skip ? h->skip : 1;
  if (h->levels > 0) {
    /* Level l: every 2^l-th level-0 key, read in place, into the same accumulators. */
    for (size_t l = 0; l < h->levels; l++) {
      const size_t s = l < 63 ? (size_t)1 << l : SIZE_MAX;
      const bool one = s >= h->nkeys;
      const size_t ns = one ? 1 : pose_ceil_div(h->nkeys, s);
      key_pass p = {h->k, h->v, one ? h->ldk : s * h->ldk, one ? h->ldv : s * h->ldv,
                    ns,   0,    one ? 1 : s * skip,        PASS_ALL,
                    NULL};
      run_pass(h, &p, &b);
    }
  } else if (h->top_m > 0) {
    /* The block's top_m keys by importance, gathered (ascending) into this worker's scratch. */
    float *x = (float *)(void *)b.l + align16(2 * POSE_ATTN_QBLOCK);
    const size_t top = h->top_m < h->nkeys ? h->top_m : h->nkeys;
    double *mean = (double *)(void *)x;
    x += align16(2 * hd);
    double *scores = (double *)(void *)x;
    x += align16(2 * h->nkeys);
    size_t *sel = (size_t *)(void *)x;
    x += align16(2 * h->nkeys);
    float *gk = x, *gv = x + align16(top * hd);
    const size_t i_last = i0 + m - 1;
    const size_t ncand = h->causal && i_last + 1 < h->nkeys ? i_last + 1 : h->nkeys;
    const size_t cnt = pose_importance_select(b.q, h->ldq, m, h->k, h->ldk, ncand, hd, h->scale,
                                              h->top_m, mean, scores, sel);
    for (size_t r = 0; r < cnt; r++) {
      memcpy(gk + r * hd, h->k + sel[r] * h->ldk, hd * sizeof(float));
      memcpy(gv + r * hd, h->v + sel[r] * h->ldv, hd * sizeof(float));
    }
    key_pass p = {gk, gv, hd, hd, cnt, 0, 1, PASS_ALL, sel};
    run_pass(h, &p, &b);
  } else if (h->window == 0) {
    key_pass p = {h->k, h->v, h->ldk, h->ldv, h->nkeys, 0, skip, PASS_ALL, NULL};
    run_pass(h, &p, &b);
  } else {
    /* Pass A: the strided keys, read in place; pass B: the contiguous window range of the
     * block, [i0 - window, i_last + window] clipped to the keys (and to i_last if causal). */
    const size_t ns = pose_ceil_div(h->nkeys, skip), ls = ns > 1 ? skip : 1;
    key_pass a = {h->k, h->v, ls * h->ldk, ls * h->ldv, ns, 0, skip, PASS_OUTSIDE_WINDOW, NULL};
    run_pass(h, &a, &b);
    const size_t i_last = i0 + m - 1, lo = i0 > h->window ? i0 - h->window : 0;
    size_t hi =
        h->window < h->nkeys && i_last < h->nkeys - h->window ? i_last + h->window : h->nkeys - 1;
    if (h->causal && hi > i_last) hi = i_last;
    key_pass w = {h->k + lo * h->ldk,
                  h->v + lo * h->ldv,
                  h->ldk,
                  h->ldv,
                  hi - lo + 1,
                  lo,
                  1,
                  PASS_INSIDE_WINDOW,
                  NULL};
    run_pass(h, &w, &b);
    /* Pass C: the global keys [0, num_global) clipped to the keys, contiguous rows; each row
     * masks those the strided and window passes already gave it. */
    const size_t ng = h->num_global < h->nkeys ? h->num_global : h->nkeys;
    if (ng > 0) {
      key_pass g = {h->k, h->v, h->ldk, h->ldv, ng, 0, 1, PASS_GLOBAL, NULL};
      run_pass(h, &g, &b);
    }
  }
  if (b.first) {
    for (size_t r = 0; r < m * hd; r++) b.o[r] = 0.0f;
  }
  write_output(h, i0, m, b.o, b.l);
}

void pose_attention_core(const pose_attn_head *h, float *work) {
  size_t blocks = pose_attention_blocks(h->nq);
  for (size_t b = 0; b < blocks; b++) pose_attention_block(h, b, work);
}

typedef struct heads_job {
  pose_head_fn describe;
  const void *ctx;
  size_t heads, blocks;
  float *work;
  size_t work_floats;
} heads_job;

static void heads_task(void *arg, size_t task, size_t worker) {
  const heads_job *j = arg;
  /* Consecutive tasks are neighbouring blocks of one head, which share its keys in cache. */
  size_t blk = task % j->blocks, head = task / j->blocks;
  pose_attn_head h;
  j->describe(j->ctx, head / j->heads, head % j->heads, &h);
  pose_attention_block(&h, blk, j->work + worker * j->work_floats);
}

void pose_attention_heads(size_t batch, size_t heads, size_t max_nq, pose_head_fn describe,
                          const void *ctx, float *work, size_t work_floats) {
  heads_job j = {describe, ctx, heads, pose_attention_blocks(max_nq), work, work_floats};
  pose_attn_head first;
  describe(ctx, 0, 0, &first); /* sizes of every head but the lengths */
  double flops =
      4.0 * (double)(batch * heads) * (double)max_nq * (double)first.nkeys * (double)first.head_dim;
  pose_parallel_for(batch * heads * j.blocks, flops, heads_task, &j);
}
