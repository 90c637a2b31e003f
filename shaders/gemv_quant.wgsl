// Matrix-vector product with a block-quantized weight kept packed (decode):
// y = x · Wᵀ (+ bias), then the fused epilogue (shaders/lib/epilogue.wgsl), with W [N, K] in
// ggml blocks of any type shaders/lib/quant_blocks.wgsl decodes (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, Q4_K, Q5_K, Q6_K), dequantized in registers, f32 accumulation.
//   x: [M, K] (`elem`); y, other: [M, N] (`elem`); bias: [N]; grid z walks the M rows of x
//   (decode has M = 1; a long prompt takes shaders/matmul_quant.wgsl).
//   scales, quants: the re-laid blocks (see quant_blocks.wgsl).
// Tiling: LANES consecutive invocations own one output row; lane i takes the row's 8-weight
// chunks i, i + LANES, ... (so the lanes read neighbouring words, and a 256-weight K-quant
// block is spread over 32 lanes), then the lanes' partial sums are reduced in workgroup
// memory; a workgroup covers WG / LANES rows, on a 2-D grid (flat = x + y * nwg.x).

// struct Params and the bindings: shaders/lib/packed_linear.wgsl.

override WG: u32 = 256u;
const LANES: u32 = 32u;


// packed_row_dot, lane_group_sum: shaders/lib/packed_row.wgsl; epilogue:
// shaders/lib/epilogue.wgsl.

@compute @workgroup_size(WG)
fn gemv_quant(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let xb = wg.z * p.k;
    var sum = 0.0;
    if (row < p.n) {
        sum = packed_row_dot(row * p.scale_words, row * p.blocks * QWORDS, xb, p.k, lane);
    }
    let total = lane_group_sum(lid, sum);
    if (lane == 0u && row < p.n) {
        var v = total;
        if (p.has_bias != 0u) {
            v += f32(bias[row]);
        }
        let i = wg.z * p.n + row;
        y[i] = elem(epilogue(v, i));
    }
}
