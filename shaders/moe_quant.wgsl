// The mixture-of-experts expert GEMV (shaders/moe.wgsl's moe_gemv) with the experts'
// weights kept packed in ggml blocks (shaders/lib/quant_blocks.wgsl decodes them): per
// (token, slot) pair p, y[p, n] = W[ids[p]·N + n, :] · x[p / x_div, :], W the experts' [N, K]
// matrices stacked by rows and re-laid as one [E·N, K] packed weight; then · weights[p] where
// p.weighted is 1, and the epilogue (shaders/lib/epilogue.wgsl). Only the chosen experts'
// blocks are read.
// Tiling: as shaders/gemv_quant.wgsl: LANES invocations per output row take its 8-weight
// chunks in turn and reduce in workgroup memory; WG / LANES rows a workgroup (grid x, y),
// the pairs in grid z.

struct Params {
    n: u32,
    k: u32,
    // Blocks and head words per row of W.
    blocks: u32,
    scale_words: u32,
    x_div: u32,
    weighted: u32,
    epilogue: u32,
    pad: u32,
}

override WG: u32 = 256u;
const LANES: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> quants: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;
@group(0) @binding(5) var<storage, read> ids: array<u32>;
@group(0) @binding(6) var<storage, read> other: array<elem>;
@group(0) @binding(7) var<storage, read> weights: array<f32>;

var<workgroup> partial: array<f32, WG>;

// dequant8: shaders/lib/quant_blocks.wgsl; epilogue: shaders/lib/epilogue.wgsl.

@compute @workgroup_size(WG)
fn moe_gemv_quant(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let out_row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let pair = wg.z;
    var sum = 0.0;
    if (out_row < p.n) {
        let row = ids[pair] * p.n + out_row;
        let head0 = row * p.scale_words;
        let quant0 = row * p.blocks * QWORDS;
        let xb = (pair / p.x_div) * p.k;
        for (var c = lane; c < p.k / 8u; c += LANES) {
            let w = dequant8(head0, quant0, c);
            let i = xb + 8u * c;
            let x_lo = vec4<f32>(f32(x[i]), f32(x[i + 1u]), f32(x[i + 2u]), f32(x[i + 3u]));
            let x_hi = vec4<f32>(f32(x[i + 4u]), f32(x[i + 5u]), f32(x[i + 6u]), f32(x[i + 7u]));
            sum += dot(w.lo, x_lo) + dot(w.hi, x_hi);
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lane == 0u && out_row < p.n) {
        var v = partial[lid];
        if (p.weighted != 0u) {
            v *= weights[pair];
        }
        let i = pair * p.n + out_row;
        y[i] = elem(epilogue(v, i));
    }
}
