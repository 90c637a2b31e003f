// Shared by shaders/matmul.wgsl, matmul_wide.wgsl, matmul_coop.wgsl and gemv.wgsl (appended to
// each by the host; WGSL resolves module-scope names in any order). The including shader
// declares `p.epilogue` and the `other` binding.
// The fused epilogue on an output value v (bias already added) at flat index i of c:
// p.epilogue 0 keeps v, 1 adds other[i] (a residual), 2 gives silu(other[i]) · v (SwiGLU with
// the gate in other).
fn epilogue(v: f32, i: u32) -> f32 {
    if (p.epilogue == 1u) {
        return v + f32(other[i]);
    }
    if (p.epilogue == 2u) {
        let g = f32(other[i]);
        // exp(-g) overflows to inf for g < -88; g / inf is the correct limit (-0).
        return g / (1.0 + exp(-g)) * v;
    }
    return v;
}
