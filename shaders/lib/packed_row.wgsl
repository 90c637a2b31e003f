// A packed weight row times a row of x, spread over LANES lanes (shared by
// shaders/gemv_quant.wgsl and moe_quant.wgsl, appended by the host). The including shader
// declares `x`, `WG` and `LANES`, and the `scales` / `quants` that quant_blocks.wgsl reads.

var<workgroup> partial: array<f32, WG>;

// Lane `lane`'s share of (row whose heads start at word head0, quants at word quant0) ·
// x[xb .. xb + k]: the row's 8-weight chunks lane, lane + LANES, ... (neighbouring lanes
// read neighbouring words).
fn packed_row_dot(head0: u32, quant0: u32, xb: u32, k: u32, lane: u32) -> f32 {
    var sum = 0.0;
    for (var c = lane; c < k / 8u; c += LANES) {
        let w = dequant8(head0, quant0, c);
        let i = xb + 8u * c;
        let x_lo = vec4<f32>(f32(x[i]), f32(x[i + 1u]), f32(x[i + 2u]), f32(x[i + 3u]));
        let x_hi = vec4<f32>(f32(x[i + 4u]), f32(x[i + 5u]), f32(x[i + 6u]), f32(x[i + 7u]));
        sum += dot(w.lo, x_lo) + dot(w.hi, x_hi);
    }
    return sum;
}

// The sum of `sum` over each group of LANES consecutive invocations, valid in the group's
// first lane. Every invocation calls it (it holds barriers).
fn lane_group_sum(lid: u32, sum: f32) -> f32 {
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lid % LANES < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    return partial[lid];
}
