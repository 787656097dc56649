/* Causal depthwise convolution followed by SiLU, float32, one thread (it is a small part of a
   Mamba layer's work):

       pre_t[c] = bias[c] + sum_{k < width} weight[k][c] * x_{t - width + 1 + k}[c]   (x_t = 0 for t < 0)
       y_t[c]   = pre_t[c] / (1 + exp(-pre_t[c]))

   x [batch, L, channels] is read through its batch and time strides (channels contiguous), so a
   column slice of a projection needs no copy; y is contiguous. Each output is computed alone, in
   a fixed order, so it does not depend on the rest of the batch. */

#include <math.h>
#include <stdint.h>

void janus_causal_conv_silu(int64_t batch, int64_t length, int64_t channels, int64_t width, const float *x,
                            int64_t batch_stride, int64_t time_stride, const float *weight, const float *bias,
                            float *y) {
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t t = 0; t < length; t++) {
            float *out = y + (b * length + t) * channels;
#pragma omp simd
            for (int64_t c = 0; c < channels; c++) out[c] = bias ? bias[c] : 0.0f;
            for (int64_t k = 0; k < width; k++) {
                const int64_t source = t - width + 1 + k;
                if (source < 0) continue;
                const float *in = x + b * batch_stride + source * time_stride, *w = weight + k * channels;
#pragma omp simd
                for (int64_t c = 0; c < channels; c++) out[c] += w[c] * in[c];
            }
#pragma omp simd
            for (int64_t c = 0; c < channels; c++) out[c] = out[c] / (1.0f + expf(-out[c]));
        }
    }
}
