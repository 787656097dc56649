/* Janus attention forward on CPU, float32: one pass of online softmax over each query's allowed
   keys, as attention.py's janus_mask defines them.

   For N positions the input has 2N rows, 0..N-1 the forward stream and N..2N-1 the backward
   stream. Query t of a half sees, in each half of the keys, one interval of key positions s:

       forward query t:  forward keys 0..t,    backward keys t+2..N-1
       backward query t: forward keys 0..t-2,  backward keys t..N-1

   so every query sees N-1 or N keys, and items of QUERY_BLOCK queries all cost about the same.

   An item keeps its queries in the vector lanes: its scores are a [KEY_BLOCK][QUERY_BLOCK] tile,
   so the softmax's running maxima and sums are plain vector operations, and both products are
   register blocks of broadcast key (or value) entries times vectors of queries. Scores are kept
   in base 2 (log2(e) folded into the query scale): exp2 from a short polynomial is much cheaper
   than exp, and the exponential is the costliest step after the two products.

   q, k, v, out: [pairs, 2N, head_dim] contiguous; lse [pairs, 2N], each query's natural
   log-sum-exp of its allowed scores. An item is one (batch, head) pair and one block of queries
   within one half; its keys are visited in a fixed order, so a query's result does not depend on
   the rest of the batch or on the number of threads. */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "exp2_approx.h"

#define LANES 8
#define QUERY_BLOCK 48 /* queries per item, 6 vectors */
#define KEY_BLOCK 64
#define MAX_HEAD_DIM 128
#define VECTORS_PER_BLOCK 3 /* query vectors per register block; QUERY_BLOCK / LANES is a multiple */
#define KEYS_PER_BLOCK 4    /* key (or value dimension) broadcasts per register block */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

static inline vec load(const float *p) {
    vec x;
    memcpy(&x, p, sizeof x);
    return x;
}

static inline void store(float *p, vec x) { memcpy(p, &x, sizeof x); }

/* Keeps a loaded vector in a register: left alone, GCC folds the load into every multiply-add
   that uses it, and the register blocks below then wait on loads rather than on arithmetic. */
#if defined(__x86_64__) && defined(__AVX__)
#define IN_REGISTER(x) __asm__("" : "+x"(x))
#else
#define IN_REGISTER(x) (void)0
#endif

/* 2^x, exactly 0 below -126, where masked scores (-inf) land. */
static inline __attribute__((always_inline)) float exp2_or_zero(float x) {
    return x < -126.0f ? 0.0f : exp2_approx(x);
}

typedef struct {
    int64_t pairs, n, head_dim;
    const float *q, *k, *v;
    float *out, *lse;
    float scale2;
    int n_threads, thread;
} Task;

/* Allowed key positions [lo, hi] of query position t of half q_half in key half k_half. */
static inline void key_interval(int q_half, int k_half, int64_t t, int64_t n, int64_t *lo, int64_t *hi) {
    if (q_half == 0) {
        *lo = k_half == 0 ? 0 : t + 2;
        *hi = k_half == 0 ? t : n - 1;
    } else {
        *lo = k_half == 0 ? 0 : t;
        *hi = k_half == 0 ? t - 2 : n - 1;
    }
}

/* tile[j][i] = sum_d rows[j][d] * columns[d][i] for j < KEY_BLOCK (rows[j] a pointer to row j of
   a [*, head_dim] matrix) and i < QUERY_BLOCK: the scores, with rows the keys and columns the
   transposed queries. */
static void scores_tile(const float *const rows[KEY_BLOCK], const float columns[][QUERY_BLOCK],
                        int64_t head_dim, float tile[KEY_BLOCK][QUERY_BLOCK]) {
    for (int j = 0; j < KEY_BLOCK; j += KEYS_PER_BLOCK) {
        for (int i = 0; i < QUERY_BLOCK; i += VECTORS_PER_BLOCK * LANES) {
            vec acc[KEYS_PER_BLOCK][VECTORS_PER_BLOCK] = {{{0}}};
            for (int64_t d = 0; d < head_dim; d++) {
                vec x[VECTORS_PER_BLOCK];
                for (int c = 0; c < VECTORS_PER_BLOCK; c++) {
                    x[c] = load(columns[d] + i + c * LANES);
                    IN_REGISTER(x[c]);
                }
                for (int r = 0; r < KEYS_PER_BLOCK; r++) {
                    const float key = rows[j + r][d];
                    for (int c = 0; c < VECTORS_PER_BLOCK; c++) acc[r][c] += key * x[c];
                }
            }
            for (int r = 0; r < KEYS_PER_BLOCK; r++)
                for (int c = 0; c < VECTORS_PER_BLOCK; c++) store(tile[j + r] + i + c * LANES, acc[r][c]);
        }
    }
}

/* acc[d][i] += sum_j values[j][d] * probs[j][i] for j < keys, d < head_dim, i < QUERY_BLOCK. */
static void accumulate(const float *values, int64_t head_dim, int keys, const float probs[KEY_BLOCK][QUERY_BLOCK],
                       float acc[][QUERY_BLOCK]) {
    int64_t d = 0;
    for (; d + KEYS_PER_BLOCK <= head_dim; d += KEYS_PER_BLOCK) {
        for (int i = 0; i < QUERY_BLOCK; i += VECTORS_PER_BLOCK * LANES) {
            vec sums[KEYS_PER_BLOCK][VECTORS_PER_BLOCK];
            for (int r = 0; r < KEYS_PER_BLOCK; r++)
                for (int c = 0; c < VECTORS_PER_BLOCK; c++) sums[r][c] = load(acc[d + r] + i + c * LANES);
            for (int j = 0; j < keys; j++) {
                vec p[VECTORS_PER_BLOCK];
                for (int c = 0; c < VECTORS_PER_BLOCK; c++) {
                    p[c] = load(probs[j] + i + c * LANES);
                    IN_REGISTER(p[c]);
                }
                for (int r = 0; r < KEYS_PER_BLOCK; r++) {
                    const float value = values[j * head_dim + d + r];
                    for (int c = 0; c < VECTORS_PER_BLOCK; c++) sums[r][c] += value * p[c];
                }
            }
            for (int r = 0; r < KEYS_PER_BLOCK; r++)
                for (int c = 0; c < VECTORS_PER_BLOCK; c++) store(acc[d + r] + i + c * LANES, sums[r][c]);
        }
    }
    for (; d < head_dim; d++)
        for (int j = 0; j < keys; j++) {
            const float value = values[j * head_dim + d];
#pragma omp simd
            for (int i = 0; i < QUERY_BLOCK; i++) acc[d][i] += value * probs[j][i];
        }
}

/* Online softmax over one tile of masked scores: turns tile into probabilities relative to the
   running maxima, and rescales the running sums and accumulators to the new maxima. */
static void softmax_step(float tile[KEY_BLOCK][QUERY_BLOCK], int64_t head_dim, float row_max[QUERY_BLOCK],
                         float row_sum[QUERY_BLOCK], float acc[][QUERY_BLOCK]) {
    float new_max[QUERY_BLOCK], shift[QUERY_BLOCK], rescale[QUERY_BLOCK];
    for (int i = 0; i < QUERY_BLOCK; i++) new_max[i] = row_max[i];
    for (int j = 0; j < KEY_BLOCK; j++)
#pragma omp simd
        for (int i = 0; i < QUERY_BLOCK; i++) new_max[i] = fmaxf(new_max[i], tile[j][i]);
#pragma omp simd
    for (int i = 0; i < QUERY_BLOCK; i++) {
        shift[i] = new_max[i] == -INFINITY ? 0.0f : new_max[i]; /* no allowed key yet */
        rescale[i] = exp2_or_zero(row_max[i] - shift[i]);
        row_max[i] = new_max[i];
        row_sum[i] *= rescale[i];
    }
    for (int64_t d = 0; d < head_dim; d++)
#pragma omp simd
        for (int i = 0; i < QUERY_BLOCK; i++) acc[d][i] *= rescale[i];
    for (int j = 0; j < KEY_BLOCK; j++)
#pragma omp simd
        for (int i = 0; i < QUERY_BLOCK; i++) {
            tile[j][i] = exp2_or_zero(tile[j][i] - shift[i]);
            row_sum[i] += tile[j][i]; /* (a local array of sums here defeats GCC's vectorizer) */
        }
}

static void run_item(const Task *t, int64_t pair, int q_half, int64_t t0) {
    static const float zero_row[MAX_HEAD_DIM] = {0};
    const int64_t n = t->n, hd = t->head_dim;
    const int rows = (int)(n - t0 < QUERY_BLOCK ? n - t0 : QUERY_BLOCK);
    const float *q = t->q + (pair * 2 * n + q_half * n + t0) * hd;
    const float *k = t->k + pair * 2 * n * hd, *v = t->v + pair * 2 * n * hd;
    float queries[MAX_HEAD_DIM][QUERY_BLOCK] = {{0}}, acc[MAX_HEAD_DIM][QUERY_BLOCK] = {{0}};
    float tile[KEY_BLOCK][QUERY_BLOCK], row_max[QUERY_BLOCK], row_sum[QUERY_BLOCK] = {0};
    const float *key_rows[KEY_BLOCK];
    for (int i = 0; i < QUERY_BLOCK; i++) row_max[i] = -INFINITY;
    for (int i = 0; i < rows; i++)
        for (int64_t d = 0; d < hd; d++) queries[d][i] = q[i * hd + d] * t->scale2;
    for (int k_half = 0; k_half < 2; k_half++) {
        int64_t lo[QUERY_BLOCK], hi[QUERY_BLOCK];
        for (int i = 0; i < QUERY_BLOCK; i++) {
            key_interval(q_half, k_half, t0 + (i < rows ? i : rows - 1), n, &lo[i], &hi[i]);
            if (i >= rows) hi[i] = lo[i] - 1; /* queries past the block's end see nothing */
        }
        /* The intervals move monotonically with t: the block's first and last queries bound the
           union [first, last] and the intersection [inner_lo, inner_hi]. */
        const int64_t first = lo[0] < lo[rows - 1] ? lo[0] : lo[rows - 1];
        const int64_t last = hi[0] > hi[rows - 1] ? hi[0] : hi[rows - 1];
        const int64_t inner_lo = lo[0] > lo[rows - 1] ? lo[0] : lo[rows - 1];
        const int64_t inner_hi = hi[0] < hi[rows - 1] ? hi[0] : hi[rows - 1];
        for (int64_t c0 = first; c0 <= last; c0 += KEY_BLOCK) {
            const int keys = (int)(last + 1 - c0 < KEY_BLOCK ? last + 1 - c0 : KEY_BLOCK);
            for (int j = 0; j < KEY_BLOCK; j++) key_rows[j] = j < keys ? k + (k_half * n + c0 + j) * hd : zero_row;
            scores_tile(key_rows, (const float(*)[QUERY_BLOCK])queries, hd, tile);
            if (rows < QUERY_BLOCK || keys < KEY_BLOCK || c0 < inner_lo || c0 + keys - 1 > inner_hi) {
                for (int j = 0; j < KEY_BLOCK; j++)
#pragma omp simd
                    for (int i = 0; i < QUERY_BLOCK; i++)
                        if (c0 + j < lo[i] || c0 + j > hi[i]) tile[j][i] = -INFINITY;
            }
            softmax_step(tile, hd, row_max, row_sum, acc);
            accumulate(v + (k_half * n + c0) * hd, hd, keys, (const float(*)[QUERY_BLOCK])tile, acc);
        }
    }
    float *out = t->out + (pair * 2 * n + q_half * n + t0) * hd;
    float *lse = t->lse + pair * 2 * n + q_half * n + t0;
    for (int i = 0; i < rows; i++) {
        const float inverse = 1.0f / row_sum[i];
        for (int64_t d = 0; d < hd; d++) out[i * hd + d] = acc[d][i] * inverse;
        lse[i] = (row_max[i] + log2f(row_sum[i])) * 0.69314718f;
    }
}

static void *run_items(void *arg) {
    const Task *t = arg;
    const int64_t blocks = (t->n + QUERY_BLOCK - 1) / QUERY_BLOCK, items = t->pairs * 2 * blocks;
    for (int64_t i = t->thread; i < items; i += t->n_threads) {
        const int64_t pair = i / (2 * blocks), within = i % (2 * blocks);
        run_item(t, pair, (int)(within / blocks), (within % blocks) * QUERY_BLOCK);
    }
    return NULL;
}

/* pairs = batch * heads. Returns 1 for a head_dim over MAX_HEAD_DIM, else 0. */
int janus_attention_forward(int64_t pairs, int64_t n, int64_t head_dim, const float *q, const float *k,
                            const float *v, float *out, float *lse, float scale2, int n_threads) {
    if (head_dim < 1 || head_dim > MAX_HEAD_DIM) return 1;
    if (n_threads < 1) n_threads = 1;
    Task tasks[n_threads];
    pthread_t threads[n_threads];
    int started = 1;
    for (int i = 0; i < n_threads; i++)
        tasks[i] = (Task){.pairs = pairs, .n = n, .head_dim = head_dim, .q = q, .k = k, .v = v, .out = out,
                          .lse = lse, .scale2 = scale2, .n_threads = n_threads, .thread = i};
    for (int i = 1; i < n_threads && pthread_create(&threads[i], NULL, run_items, &tasks[i]) == 0; i++) started++;
    run_items(&tasks[0]);
    for (int i = 1; i < started; i++) pthread_join(threads[i], NULL);
    for (int i = started; i < n_threads; i++) run_items(&tasks[i]); /* threads that could not start */
    return 0;
}

int janus_attention_max_head_dim(void) { return MAX_HEAD_DIM; }
