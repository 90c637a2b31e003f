// Shared by shaders/elementwise.wgsl and activation_backward.wgsl (appended by the host): the
// two GELUs and their derivatives, f32.

// Φ(x) = P(N(0,1) <= x) through erfc(|x|/√2) (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7),
// evaluated without the cancellation of 1 + erf(x) for negative x.
fn normal_cdf(x: f32) -> f32 {
    let z = abs(x) * 0.70710678118654752;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    let erfc_z = poly * exp(-z * z);
    return select(1.0 - 0.5 * erfc_z, 0.5 * erfc_z, x < 0.0);
}

// x * Φ(x): the exact GELU.
fn gelu_erf_f(x: f32) -> f32 {
    return x * normal_cdf(x);
}

// d/dx x Φ(x) = Φ(x) + x φ(x), φ the standard normal density.
fn gelu_erf_grad(x: f32) -> f32 {
    return normal_cdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}

// 0.5 x (1 + tanh(u)) with u = √(2/π)(x + 0.044715 x³), written as x * sigmoid(2u), which is
// the same function without tanh's overflow for large |u|.
fn gelu_tanh_f(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}

// d/dx x σ(2u) = σ(2u) + x σ(2u)(1 - σ(2u)) · 2 u'(x), u' = √(2/π)(1 + 3 · 0.044715 x²).
fn gelu_tanh_grad(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    let s = 1.0 / (1.0 + exp(-2.0 * u));
    let du = 0.7978845608028654 * (1.0 + 0.134145 * x * x);
    return s + x * s * (1.0 - s) * 2.0 * du;
}
