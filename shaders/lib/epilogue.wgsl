// Shared by shaders/matmul.wgsl, matmul_wide.wgsl, matmul_coop.wgsl and gemv.wgsl (appended to
// each by the host; WGSL resolves module-scope names in any order). The including shader
// declares `p.epilogue` and the `other` binding.
// The fused epilogue on an output value v (bias already added) at flat index i of c:
// p.epilogue 0 keeps v, 1 adds other[i] (a residual), 2 gives silu(other[i]) · v (SwiGLU with
// the gate in other), 3 gives gelu_tanh(other[i]) · v (GeGLU, Gemma's MLP).
fn epilogue(v: f32, i: u32) -> f32 {
    if (p.epilogue == 1u) {
        return v + f32(other[i]);
    }
    if (p.epilogue == 2u) {
        let g = f32(other[i]);
        // exp(-g) overflows to inf for g < -88; g / inf is the correct limit (-0).
        return g / (1.0 + exp(-g)) * v;
    }
    if (p.epilogue == 3u) {
        // 0.5 g (1 + tanh(u)) = g · sigmoid(2u), u = √(2/π)(g + 0.044715 g³): no overflow.
        let g = f32(other[i]);
        let u = 0.7978845608028654 * (g + 0.044715 * g * g * g);
        return g / (1.0 + exp(-2.0 * u)) * v;
    }
    return v;
}
