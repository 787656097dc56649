/* 2^x for the C kernels: a degree-6 Taylor series of e^f for |f| <= ln(2)/2 after taking out the
   nearest integer power of two (truncation error (ln(2)/2)^7 / 7! = 1.2e-7 relative, plus
   rounding). Inlined, it vectorizes where a call to libm's exp2f would not be inlined. x is
   clamped to [-126, 126]: below, a decay no state can tell from zero; above, a sigmoid's
   1 / (1 + 2^126) that is zero in float anyway. */

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float exp2_approx(float x) {
    x = x < -126.0f ? -126.0f : (x > 126.0f ? 126.0f : x);
    const float whole = rintf(x), f = (x - whole) * 0.69314718f;
    float p = 1.0f / 720.0f;
    p = p * f + 1.0f / 120.0f;
    p = p * f + 1.0f / 24.0f;
    p = p * f + 1.0f / 6.0f;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    const int32_t bits = ((int32_t)whole + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
