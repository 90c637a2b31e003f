// The parameters and bindings of the packed linear kernels (shaders/gemv_quant.wgsl and
// matmul_quant.wgsl; appended by the host): y [M, N] = x [M, K] · Wᵀ (+ bias [N]), then the
// epilogue with `other` [M, N] (shaders/lib/epilogue.wgsl), W [N, K] re-laid ggml blocks
// (`scales`, `quants`: shaders/lib/quant_blocks.wgsl). The GEMV takes M from its grid.
struct Params {
    m: u32,
    n: u32,
    k: u32,
    // Blocks per row and head words per row of W.
    blocks: u32,
    scale_words: u32,
    has_bias: u32,
    epilogue: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> quants: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;
@group(0) @binding(5) var<storage, read> bias: array<elem>;
@group(0) @binding(6) var<storage, read> other: array<elem>;
