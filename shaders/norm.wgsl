// Normalisation over the last axis, statistics in f32 whatever the storage type `elem` is.
//   rms_norm:   out = x / sqrt(mean(x²) + eps) * weight
//   layer_norm: out = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias
// LayerNorm centres on the row's first element (mean = x[0] + mean(x - x[0])), then takes
// the variance in a second pass, Σ(x - mean)², rather than E[x²] - mean², so rows with a
// large common offset keep their precision.
// Tiling: one workgroup per row (rows on a 2-D grid, flat row = x + y * nwg.x); WG
// invocations stride over the row, partial sums meet in a workgroup-memory tree.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;

// workgroup_sum(v, lid): shaders/lib/workgroup_sum.wgsl.

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;

    var sum_sq = 0.0;
    for (var j = lid; j < p.cols; j += WG) {
        let v = f32(x[base + j]);
        sum_sq += v * v;
    }
    let inv_rms = inverseSqrt(workgroup_sum(sum_sq, lid) / f32(p.cols) + p.eps);

    for (var j = lid; j < p.cols; j += WG) {
        out[base + j] = elem(f32(x[base + j]) * inv_rms * f32(weight[j]));
    }
}

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let n = f32(p.cols);

    // Work with x - x[0] rather than x: with a large common offset the shifted values are
    // small and exact, and the mean is kept as shift + delta so that no rounding of a large
    // f32 mean enters x - mean.
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
    let inv_std = inverseSqrt(workgroup_sum(sum_sq, lid) / n + p.eps);

    for (var j = lid; j < p.cols; j += WG) {
        let v = ((f32(x[base + j]) - shift) - delta) * inv_std;
        out[base + j] = elem(v * f32(weight[j]) + f32(bias[j]));
    }
}
