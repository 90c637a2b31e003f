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


// packed_row_dot, lane_group_sum: shaders/lib/packed_row.wgsl; epilogue:
// shaders/lib/epilogue.wgsl.

@compute @workgroup_size(WG)
fn moe_gemv_quant(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let out_row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let pair = wg.z;
    var sum = 0.0;
    if (out_row < p.n) {
        let row = ids[pair] * p.n + out_row;
        let xb = (pair / p.x_div) * p.k;
        sum = packed_row_dot(row * p.scale_words, row * p.blocks * QWORDS, xb, p.k, lane);
    }
    let total = lane_group_sum(lid, sum);
    if (lane == 0u && out_row < p.n) {
        var v = total;
        if (p.weighted != 0u) {
            v *= weights[pair];
        }
        let i = pair * p.n + out_row;
        y[i] = elem(epilogue(v, i));
    }
}
