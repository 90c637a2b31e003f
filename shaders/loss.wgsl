// Losses and their gradients in one pass, f32 arithmetic whatever `elem` is.
//   cross_entropy: per row r of logits [rows, vocab] with target t = targets[r]:
//     loss[r]      = logsumexp(logits[r]) - logits[r, t]
//     dlogits[r,j] = scale · (softmax(logits[r])_j - [j == t])
//   a target ≥ vocab (PyTorch's ignore_index, u32::MAX, or any id past the vocabulary) makes
//   the row's loss and gradient 0. `scale` is the caller's: 1 / (rows counted) for a mean,
//   times a loss scale under mixed precision.
//   mse: per row r of pred and target [rows, cols] (`logits` holds pred, `target_values` the
//     target): loss[r] = Σ_j (pred - target)², dlogits = scale · 2 · (pred - target); the
//     caller divides the sum by the count for a mean (DDPM's noise-prediction loss).
// Tiling: one workgroup per row (rows on a 2-D grid, flat row = x + y * nwg.x); WG invocations
// stride over the row (cross_entropy: for the max, then the sum of exp(x - max), then the
// gradient; mse: once).

struct Params {
    rows: u32,
    vocab: u32,
    scale: f32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<elem>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<elem>;
@group(0) @binding(5) var<storage, read> target_values: array<elem>;

// workgroup_sum, workgroup_max: shaders/lib/workgroup_sum.wgsl.

const LOWEST: f32 = -3.4028234663852886e38;

@compute @workgroup_size(WG)
fn cross_entropy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.vocab;
    let label = targets[row];
    let counted = label < p.vocab;

    var m = LOWEST;
    for (var j = lid; j < p.vocab; j += WG) {
        m = max(m, f32(logits[base + j]));
    }
    m = workgroup_max(m, lid);
    var s = 0.0;
    for (var j = lid; j < p.vocab; j += WG) {
        s += exp(f32(logits[base + j]) - m);
    }
    let total = workgroup_sum(s, lid);
    for (var j = lid; j < p.vocab; j += WG) {
        var d = 0.0;
        if (counted) {
            d = exp(f32(logits[base + j]) - m) / total - select(0.0, 1.0, j == label);
        }
        dlogits[base + j] = elem(p.scale * d);
    }
    if (lid == 0u) {
        var l = 0.0;
        if (counted) {
            l = log(total) + m - f32(logits[base + label]);
        }
        loss[row] = l;
    }
}

@compute @workgroup_size(WG)
fn mse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.vocab;
    var s = 0.0;
    for (var j = lid; j < p.vocab; j += WG) {
        let d = f32(logits[base + j]) - f32(target_values[base + j]);
        s += d * d;
        dlogits[base + j] = elem(p.scale * 2.0 * d);
    }
    let total = workgroup_sum(s, lid);
    if (lid == 0u) {
        loss[row] = total;
    }
}
