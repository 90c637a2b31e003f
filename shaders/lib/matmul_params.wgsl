// The parameters of shaders/matmul.wgsl, matmul_wide.wgsl and matmul_coop.wgsl (appended by
// the host): sizes, whether bias is bound, batch strides in elements (0 shares an operand),
// and the fused epilogue's code (shaders/lib/epilogue.wgsl).
struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    batch_stride_a: u32,
    batch_stride_b: u32,
    batch_stride_c: u32,
    epilogue: u32,
}
