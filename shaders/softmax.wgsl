// Softmax over the last axis: out[r, j] = exp(x[r, j] - max_r) / Σ_j exp(x[r, j] - max_r).
// Tiling: one workgroup per row (rows on a 2-D workgroup grid, flat row = x + y * nwg.x); its
// WG invocations stride over the row keeping an online (running max, running sum) pair in f32,
// merge the pairs through workgroup memory in a tree, then make a second pass to write. Any
// row length works; the row is read twice and written once.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<elem>;

var<workgroup> part_max: array<f32, WG>;
var<workgroup> part_sum: array<f32, WG>;

const LOWEST: f32 = -3.4028234663852886e38;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if (row >= p.rows) { return; }
    let base = row * p.cols;

    var m = LOWEST;
    var s = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        let v = f32(x[base + j]);
        let m_new = max(m, v);
        s = s * exp(m - m_new) + exp(v - m_new);
        m = m_new;
    }
    part_max[lid] = m;
    part_sum[lid] = s;
    workgroupBarrier();

    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let m_a = part_max[lid];
            let m_b = part_max[lid + stride];
            let m_new = max(m_a, m_b);
            part_sum[lid] = part_sum[lid] * exp(m_a - m_new)
                + part_sum[lid + stride] * exp(m_b - m_new);
            part_max[lid] = m_new;
        }
        workgroupBarrier();
    }
    let row_max = part_max[0];
    let inv_sum = 1.0 / part_sum[0];

    for (var j = lid; j < p.cols; j += WG) {
        out[base + j] = elem(exp(f32(x[base + j]) - row_max) * inv_sum);
    }
}
