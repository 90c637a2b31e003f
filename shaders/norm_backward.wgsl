// RMSNorm's gradients, f32 arithmetic whatever `elem` is. With y = x · r · w per row,
// r = 1 / sqrt(mean(x²) + eps), n the row length and dy the gradient of y:
//   rms_norm_backward (dx): dx_j = r · w_j · dy_j - x_j · r³ / n · Σ_k dy_k · w_k · x_k,
//     and the row's r into inv_rms[row] for the weight gradient;
//   rms_norm_backward_weight (dw): dw_j = Σ_rows dy_j · x_j · r_row, summed in row order (the
//     same bits every run: no atomics).
//   layer_norm_backward (dx): for y = x̂ · w + b, x̂ = (x - mean) · r, g = dy · w:
//     dx = r · (g - mean(g) - x̂ · mean(g · x̂)), and the row's (mean, r) into `stats`;
//   layer_norm_backward_affine: dw_j = Σ_rows dy_j · x̂_j, db_j = Σ_rows dy_j (row order);
//   softmax_backward: for y = softmax(x) per row, dx = y · (dy - Σ_k dy_k · y_k), from y
//     (in `x`) and dy.
// Tiling, dx: one workgroup per row (flat row = x + y * nwg.x), WG invocations striding over
// it with two workgroup sums. dw: one invocation per column j, looping over the rows (rows
// read with a stride of n, neighbouring invocations reading neighbouring columns).

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> dy: array<elem>;
@group(0) @binding(4) var<storage, read_write> dx: array<elem>;
@group(0) @binding(5) var<storage, read_write> inv_rms: array<f32>;
@group(0) @binding(6) var<storage, read> rms_in: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw: array<elem>;
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
@group(0) @binding(9) var<storage, read> stats_in: array<f32>;
@group(0) @binding(10) var<storage, read_write> db: array<elem>;

// workgroup_sum: shaders/lib/workgroup_sum.wgsl.

@compute @workgroup_size(WG)
fn rms_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var sum_sq = 0.0;
    var dot = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        let v = f32(x[base + j]);
        sum_sq += v * v;
        dot += f32(dy[base + j]) * f32(weight[j]) * v;
    }
    let r = inverseSqrt(workgroup_sum(sum_sq, lid) / f32(p.cols) + p.eps);
    let c = workgroup_sum(dot, lid) * r * r * r / f32(p.cols);
    for (var j = lid; j < p.cols; j += WG) {
        let g = r * f32(weight[j]) * f32(dy[base + j]) - f32(x[base + j]) * c;
        dx[base + j] = elem(g);
    }
    if (lid == 0u) {
        inv_rms[row] = r;
    }
}

@compute @workgroup_size(WG)
fn rms_norm_backward_weight(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let j = (wg.x + wg.y * nwg.x) * WG + lid;
    if (j >= p.cols) { return; }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let i = r * p.cols + j;
        s += f32(dy[i]) * f32(x[i]) * rms_in[r];
    }
    dw[j] = elem(s);
}

@compute @workgroup_size(WG)
fn layer_norm_backward(@builtin(workgroup_id) wg: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let n = f32(p.cols);
    // The statistics as the forward kernel computes them (centred on the row's first value).
    let shift = f32(x[base]);
    var sum = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        sum += f32(x[base + j]) - shift;
    }
    let delta = workgroup_sum(sum, lid) / n;
    var sum_sq = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        let d = (f32(x[base + j]) - shift) - delta;
        sum_sq += d * d;
    }
    let r = inverseSqrt(workgroup_sum(sum_sq, lid) / n + p.eps);
    var sum_g = 0.0;
    var sum_gx = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        let xhat = ((f32(x[base + j]) - shift) - delta) * r;
        let g = f32(dy[base + j]) * f32(weight[j]);
        sum_g += g;
        sum_gx += g * xhat;
    }
    let mean_g = workgroup_sum(sum_g, lid) / n;
    let mean_gx = workgroup_sum(sum_gx, lid) / n;
    for (var j = lid; j < p.cols; j += WG) {
        let xhat = ((f32(x[base + j]) - shift) - delta) * r;
        let g = f32(dy[base + j]) * f32(weight[j]);
        dx[base + j] = elem(r * (g - mean_g - xhat * mean_gx));
    }
    if (lid == 0u) {
        stats[row * 2u] = shift + delta;
        stats[row * 2u + 1u] = r;
    }
}

@compute @workgroup_size(WG)
fn layer_norm_backward_affine(@builtin(workgroup_id) wg: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let j = (wg.x + wg.y * nwg.x) * WG + lid;
    if (j >= p.cols) { return; }
    var s_w = 0.0;
    var s_b = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let i = r * p.cols + j;
        let d = f32(dy[i]);
        s_w += d * (f32(x[i]) - stats_in[r * 2u]) * stats_in[r * 2u + 1u];
        s_b += d;
    }
    dw[j] = elem(s_w);
    db[j] = elem(s_b);
}

@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var dot = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        dot += f32(dy[base + j]) * f32(x[base + j]);
    }
    let total = workgroup_sum(dot, lid);
    for (var j = lid; j < p.cols; j += WG) {
        dx[base + j] = elem(f32(x[base + j]) * (f32(dy[base + j]) - total));
    }
}
