// Shared by shaders/conv2d.wgsl and conv2d_weight_grad.wgsl (appended by the host): an 8 × 8
// block of f32 accumulators an invocation owns, kept as named vec4s (row i's columns 0-3 in
// `ia`, 4-7 in `ib`) so that every compiler keeps them in registers; an array indexed in a
// loop can end up in memory where a driver does not unroll.

struct Block8 {
    r0a: vec4<f32>, r0b: vec4<f32>, r1a: vec4<f32>, r1b: vec4<f32>,
    r2a: vec4<f32>, r2b: vec4<f32>, r3a: vec4<f32>, r3b: vec4<f32>,
    r4a: vec4<f32>, r4b: vec4<f32>, r5a: vec4<f32>, r5b: vec4<f32>,
    r6a: vec4<f32>, r6b: vec4<f32>, r7a: vec4<f32>, r7b: vec4<f32>,
}

// acc += a ⊗ b: rows a (a_lo = rows 0-3, a_hi = rows 4-7), columns b (b_lo, b_hi likewise).
fn block_fma(acc: ptr<function, Block8>, a_lo: vec4<f32>, a_hi: vec4<f32>, b_lo: vec4<f32>,
             b_hi: vec4<f32>) {
    (*acc).r0a = fma(vec4<f32>(a_lo.x), b_lo, (*acc).r0a);
    (*acc).r0b = fma(vec4<f32>(a_lo.x), b_hi, (*acc).r0b);
    (*acc).r1a = fma(vec4<f32>(a_lo.y), b_lo, (*acc).r1a);
    (*acc).r1b = fma(vec4<f32>(a_lo.y), b_hi, (*acc).r1b);
    (*acc).r2a = fma(vec4<f32>(a_lo.z), b_lo, (*acc).r2a);
    (*acc).r2b = fma(vec4<f32>(a_lo.z), b_hi, (*acc).r2b);
    (*acc).r3a = fma(vec4<f32>(a_lo.w), b_lo, (*acc).r3a);
    (*acc).r3b = fma(vec4<f32>(a_lo.w), b_hi, (*acc).r3b);
    (*acc).r4a = fma(vec4<f32>(a_hi.x), b_lo, (*acc).r4a);
    (*acc).r4b = fma(vec4<f32>(a_hi.x), b_hi, (*acc).r4b);
    (*acc).r5a = fma(vec4<f32>(a_hi.y), b_lo, (*acc).r5a);
    (*acc).r5b = fma(vec4<f32>(a_hi.y), b_hi, (*acc).r5b);
    (*acc).r6a = fma(vec4<f32>(a_hi.z), b_lo, (*acc).r6a);
    (*acc).r6b = fma(vec4<f32>(a_hi.z), b_hi, (*acc).r6b);
    (*acc).r7a = fma(vec4<f32>(a_hi.w), b_lo, (*acc).r7a);
    (*acc).r7b = fma(vec4<f32>(a_hi.w), b_hi, (*acc).r7b);
}
