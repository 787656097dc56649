/* Fused CPU selective scan (Mamba-1 recurrence), forward and backward, float32.

   For one batch row and channel d, with state h[n] starting at zero:

       h_t[n] = exp2(delta_t[d] * A2[d, n]) * h_{t-1}[n] + delta_t[d] u_t[d] * B_t[n]
       y_t[d] = sum_n h_t[n] * C_t[n]
       out_t[d] = (y_t[d] + D[d] u_t[d]) * silu(z_t[d])

   where A2 = A * log2(e). The forward pass reads u, delta and z through (batch, time, channel)
   strides, so views need no copy, and B, C [batch, L, n] through (batch, time) strides. The
   backward pass covers the scan alone (y from delta, du = delta * u, A, B, C), on contiguous
   [batch, L, d_in] tensors; scan.py does the rest of the chain rule.

   Work is split into items of one batch row and CHANNELS consecutive channels (wide enough that
   the per-position loads and the gate are a small part of an item's work). An item's state
   stays in cache for the whole sequence and nothing of size L * d_in * n is ever stored. Each
   output value is computed by one item in a fixed order, so a row's results do not depend on
   the other rows of the batch or on the number of threads. The backward pass writes the
   gradients of B, C and A per item (summed by the caller in a fixed order) and recomputes the
   states segment by segment from checkpoints taken every SEGMENT steps. */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exp2_approx.h"

#define CHANNELS 48
#define SEGMENT 64
/* The forward pass asks for the rows PREFETCH positions ahead: an item reads and writes 48 channels
   of rows d_in floats apart, a stride the hardware prefetcher follows poorly once rows are wide
   (at d_in 288 the item ran at half the speed of d_in 96 without it). */
#define PREFETCH 8
#define FLOATS_PER_LINE 16

typedef struct {
    int64_t batch, length, d_in, n;
    const float *delta, *du, *A2, *A, *B, *C, *grad_y;
    float *grad_delta, *grad_du, *grad_A_items, *grad_B_items, *grad_C_items;
    /* forward only */
    const float *u, *z, *D;
    const int64_t *u_strides, *delta_strides, *z_strides, *B_strides, *C_strides;
    float *out, *pre_gate;
    int delta_softplus;
    int backward;
    int n_threads, thread;
    int status;
} Task;

/* softplus(x) = max(x, 0) + log1p(e) with e = exp(-|x|) in (0, 1], and log1p(e) = 2 atanh(s) for
   s = e / (2 + e) in (0, 1/3]: its odd series to s^13 is within 1.4e-8 relative, and stays
   accurate for tiny e, where log(1 + e) would round 1 + e. */
static inline float softplus(float x) {
    const float e = exp2_approx(-1.44269504f * fabsf(x)), s = e / (2.0f + e), s2 = s * s;
    float p = 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return fmaxf(x, 0.0f) + 2.0f * s * p;
}

static int64_t channel_blocks(const Task *t) { return (t->d_in + CHANNELS - 1) / CHANNELS; }

/* Backward pass: advance the states h[w][n] of channels d0..d0+w-1 by one step at position `row`
   of the contiguous inputs. */
static inline void step(const Task *t, int64_t row, int64_t d0, int64_t w, float *h) {
    const int64_t n = t->n;
    const float *B = t->B + row * n;
    for (int64_t k = 0; k < w; k++) {
        const int64_t d = d0 + k;
        const float dt = t->delta[row * t->d_in + d], x = t->du[row * t->d_in + d];
        const float *a = t->A2 + d * n;
        float *hk = h + k * n;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) hk[j] = exp2_approx(dt * a[j]) * hk[j] + x * B[j];
    }
}

/* Copies w values, `stride` apart, into lanes; lanes w..CHANNELS-1 keep their zeros. */
static inline void gather(float *lanes, const float *x, int64_t stride, int64_t w) {
    if (stride == 1) memcpy(lanes, x, sizeof(float) * (size_t)w);
    else for (int64_t k = 0; k < w; k++) lanes[k] = x[k * stride];
}

/* The forward pass vectorizes over the item's channels: its state is laid out [n][CHANNELS], and
   channels past d_in are padded lanes with delta = u = 0, whose state stays zero. */
static int forward_item(const Task *t, int64_t b, int64_t block) {
    const int64_t n = t->n, d_in = t->d_in, length = t->length;
    const int64_t d0 = block * CHANNELS, w = d_in - d0 < CHANNELS ? d_in - d0 : CHANNELS;
    const int64_t *us = t->u_strides, *ds = t->delta_strides, *zs = t->z_strides;
    const float *u_in = t->u + b * us[0] + d0 * us[2], *delta_in = t->delta + b * ds[0] + d0 * ds[2];
    const float *z_in = t->z + b * zs[0] + d0 * zs[2];
    const float *B_in = t->B + b * t->B_strides[0], *C_in = t->C + b * t->C_strides[0];
    const int64_t B_step = t->B_strides[1], C_step = t->C_strides[1];
    float *out_row = t->out + b * length * d_in + d0;
    float *pre_gate_row = t->pre_gate ? t->pre_gate + b * length * d_in + d0 : NULL;
    float *h = calloc((size_t)(n * CHANNELS), sizeof(float));
    float *a2 = calloc((size_t)(n * CHANNELS), sizeof(float));  /* A2 of the item, [n][CHANNELS] */
    if (!h || !a2) { free(h); free(a2); return 1; }
    float D[CHANNELS] = {0};
    for (int64_t k = 0; k < w; k++) {
        D[k] = t->D[d0 + k];
        for (int64_t j = 0; j < n; j++) a2[j * CHANNELS + k] = t->A2[(d0 + k) * n + j];
    }
    for (int64_t pos = 0; pos < length; pos++) {
        const float *B = B_in + pos * B_step, *C = C_in + pos * C_step;
        float u[CHANNELS] = {0}, dt[CHANNELS] = {0}, z[CHANNELS] = {0}, x[CHANNELS], y[CHANNELS] = {0};
        if (pos + PREFETCH < length) {
            for (int64_t k = 0; k < w; k += FLOATS_PER_LINE) {
                __builtin_prefetch(u_in + (pos + PREFETCH) * us[1] + k * us[2]);
                __builtin_prefetch(delta_in + (pos + PREFETCH) * ds[1] + k * ds[2]);
                __builtin_prefetch(z_in + (pos + PREFETCH) * zs[1] + k * zs[2]);
                __builtin_prefetch(out_row + (pos + PREFETCH) * d_in + k, 1);
                if (pre_gate_row) __builtin_prefetch(pre_gate_row + (pos + PREFETCH) * d_in + k, 1);
            }
        }
        gather(u, u_in + pos * us[1], us[2], w);
        gather(dt, delta_in + pos * ds[1], ds[2], w);
        if (t->delta_softplus) {
#pragma omp simd
            for (int k = 0; k < CHANNELS; k++) dt[k] = softplus(dt[k]);  /* padded lanes: u = 0 keeps h = 0 */
        }
#pragma omp simd
        for (int k = 0; k < CHANNELS; k++) x[k] = dt[k] * u[k];
        for (int64_t j = 0; j < n; j++) {
            const float Bj = B[j], Cj = C[j], *a = a2 + j * CHANNELS;
            float *hj = h + j * CHANNELS;
#pragma omp simd
            for (int k = 0; k < CHANNELS; k++) {
                hj[k] = exp2_approx(dt[k] * a[k]) * hj[k] + x[k] * Bj;
                y[k] += hj[k] * Cj;
            }
        }
        gather(z, z_in + pos * zs[1], zs[2], w);
        float pre_gate[CHANNELS], out[CHANNELS];
#pragma omp simd
        for (int k = 0; k < CHANNELS; k++) {
            pre_gate[k] = y[k] + D[k] * u[k];
            out[k] = pre_gate[k] * z[k] / (1.0f + exp2_approx(-1.44269504f * z[k]));
        }
        memcpy(out_row + pos * d_in, out, sizeof(float) * (size_t)w);
        if (pre_gate_row) memcpy(pre_gate_row + pos * d_in, pre_gate, sizeof(float) * (size_t)w);
    }
    free(h);
    free(a2);
    return 0;
}

static int backward_item(const Task *t, int64_t b, int64_t block) {
    const int64_t n = t->n, L = t->length, d_in = t->d_in;
    const int64_t d0 = block * CHANNELS, w = d_in - d0 < CHANNELS ? d_in - d0 : CHANNELS;
    const int64_t state = w * n, segments = (L + SEGMENT - 1) / SEGMENT;
    float *entering = malloc(sizeof(float) * (size_t)(segments * state));  /* state before each segment */
    float *states = malloc(sizeof(float) * (size_t)(SEGMENT * state));    /* h_t within one segment */
    float *g = calloc((size_t)state, sizeof(float));                        /* gradient of h_t */
    float *decay_next = calloc((size_t)state, sizeof(float));               /* exp2(delta_{t+1} A2) */
    float *grad_A = calloc((size_t)state, sizeof(float));
    float *h = calloc((size_t)state, sizeof(float));
    if (!entering || !states || !g || !decay_next || !grad_A || !h) {
        free(entering); free(states); free(g); free(decay_next); free(grad_A); free(h);
        return 1;
    }
    for (int64_t s = 0; s < segments; s++) {
        memcpy(entering + s * state, h, sizeof(float) * (size_t)state);
        const int64_t stop = (s + 1) * SEGMENT < L ? (s + 1) * SEGMENT : L;
        for (int64_t pos = s * SEGMENT; pos < stop; pos++) step(t, b * L + pos, d0, w, h);
    }
    float *grad_B = t->grad_B_items + block * t->batch * L * n;
    float *grad_C = t->grad_C_items + block * t->batch * L * n;
    for (int64_t s = segments - 1; s >= 0; s--) {
        const int64_t start = s * SEGMENT, stop = start + SEGMENT < L ? start + SEGMENT : L;
        memcpy(h, entering + s * state, sizeof(float) * (size_t)state);
        for (int64_t pos = start; pos < stop; pos++) {
            step(t, b * L + pos, d0, w, h);
            memcpy(states + (pos - start) * state, h, sizeof(float) * (size_t)state);
        }
        for (int64_t pos = stop - 1; pos >= start; pos--) {
            const int64_t row = b * L + pos;
            const float *B = t->B + row * n, *C = t->C + row * n;
            const float *h_now = states + (pos - start) * state;
            const float *h_prev = pos > start ? h_now - state : entering + s * state;
            float *gB = grad_B + row * n, *gC = grad_C + row * n;
            for (int64_t j = 0; j < n; j++) gB[j] = gC[j] = 0.0f;
            for (int64_t k = 0; k < w; k++) {
                const int64_t d = d0 + k;
                const float dt = t->delta[row * d_in + d], x = t->du[row * d_in + d];
                const float gy = t->grad_y[row * d_in + d];
                const float *a2 = t->A2 + d * n, *a = t->A + d * n;
                const float *hk = h_now + k * n, *hp = h_prev + k * n;
                float *gk = g + k * n, *dn = decay_next + k * n, *gAk = grad_A + k * n;
                float grad_du = 0.0f, grad_delta = 0.0f;
#pragma omp simd reduction(+ : grad_du, grad_delta)
                for (int64_t j = 0; j < n; j++) {
                    /* g_t = decay_{t+1} g_{t+1} + C_t gy_t */
                    gk[j] = gk[j] * dn[j] + C[j] * gy;
                    gC[j] += hk[j] * gy;
                    gB[j] += gk[j] * x;
                    grad_du += gk[j] * B[j];
                    /* decay_t = exp(delta_t A): its gradient g_t h_{t-1}, times decay_t, is the
                       gradient q of delta_t A */
                    const float decay = exp2_approx(dt * a2[j]);
                    const float q = gk[j] * hp[j] * decay;
                    grad_delta += q * a[j];
                    gAk[j] += q * dt;
                    dn[j] = decay;
                }
                t->grad_du[row * d_in + d] = grad_du;
                t->grad_delta[row * d_in + d] = grad_delta;
            }
        }
    }
    memcpy(t->grad_A_items + (b * d_in + d0) * n, grad_A, sizeof(float) * (size_t)state);
    free(entering); free(states); free(g); free(decay_next); free(grad_A); free(h);
    return 0;
}

static void *run_items(void *arg) {
    Task *t = arg;
    const int64_t blocks = channel_blocks(t), items = t->batch * blocks;
    for (int64_t i = t->thread; i < items; i += t->n_threads) {
        const int64_t b = i / blocks, block = i % blocks;
        if ((t->backward ? backward_item : forward_item)(t, b, block)) t->status = 1;
    }
    return NULL;
}

static int run(Task *task, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    Task *tasks = malloc(sizeof(Task) * (size_t)n_threads);
    pthread_t *threads = malloc(sizeof(pthread_t) * (size_t)n_threads);
    if (!tasks || !threads) { free(tasks); free(threads); return 1; }
    int started = 0, status = 0;
    for (int i = 0; i < n_threads; i++) {
        tasks[i] = *task;
        tasks[i].n_threads = n_threads;
        tasks[i].thread = i;
        tasks[i].status = 0;
        if (i > 0 && pthread_create(&threads[i], NULL, run_items, &tasks[i]) == 0) started++;
        else if (i > 0) { status = 1; break; }
    }
    if (!status) run_items(&tasks[0]);
    for (int i = 1; i <= started; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i <= started; i++) status |= tasks[i].status;
    free(tasks); free(threads);
    return status;
}

/* strides in elements: u, delta, z (batch, time, channel); B, C (batch, time). pre_gate may be
   NULL; when set it receives y + D u (what the backward pass needs). With delta_softplus, delta is
   read through softplus. */
int janus_scan_forward(int64_t batch, int64_t length, int64_t d_in, int64_t n, const float *u,
                       const int64_t *u_strides, const float *delta, const int64_t *delta_strides,
                       const float *z, const int64_t *z_strides, const float *A2, const float *B,
                       const int64_t *B_strides, const float *C, const int64_t *C_strides,
                       const float *D, float *out, float *pre_gate, int delta_softplus, int n_threads) {
    Task t = {.batch = batch, .length = length, .d_in = d_in, .n = n, .u = u, .u_strides = u_strides,
              .delta = delta, .delta_strides = delta_strides, .z = z, .z_strides = z_strides,
              .A2 = A2, .B = B, .B_strides = B_strides, .C = C, .C_strides = C_strides, .D = D,
              .out = out, .pre_gate = pre_gate, .delta_softplus = delta_softplus, .backward = 0};
    return run(&t, n_threads);
}

/* grad_A_items [batch, d_in, n]; grad_B_items and grad_C_items [ceil(d_in / CHANNELS), batch, L, n]:
   the caller sums them over their first dimension. */
int janus_scan_backward(int64_t batch, int64_t length, int64_t d_in, int64_t n, const float *delta,
                        const float *du, const float *A2, const float *A, const float *B,
                        const float *C, const float *grad_y, float *grad_delta, float *grad_du,
                        float *grad_A_items, float *grad_B_items, float *grad_C_items, int n_threads) {
    Task t = {.batch = batch, .length = length, .d_in = d_in, .n = n, .delta = delta, .du = du,
              .A2 = A2, .A = A, .B = B, .C = C, .grad_y = grad_y, .grad_delta = grad_delta,
              .grad_du = grad_du, .grad_A_items = grad_A_items, .grad_B_items = grad_B_items,
              .grad_C_items = grad_C_items, .backward = 1};
    return run(&t, n_threads);
}

int janus_scan_channels_per_item(void) { return CHANNELS; }
