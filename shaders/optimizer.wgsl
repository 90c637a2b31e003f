// AdamW, one fused step over a flat f32 parameter tensor and its f32 moments, in place
// (PyTorch's torch.optim.AdamW):
//   g  = grad · grad_scale            (undoing a loss scale, applying a clipping factor)
//   m  = β1 · m + (1 - β1) · g
//   v  = β2 · v + (1 - β2) · g²
//   p  = p · (1 - lr · weight_decay) - lr · (m / c1) / (sqrt(v / c2) + eps)
// with the bias corrections c1 = 1 - β1^t, c2 = 1 - β2^t computed on the host for step t.
// The gradient may be f16 (`elem`); parameters and moments are always f32 (master weights).
// adamw_copy also writes the updated parameter in the gradient's type into `param_copy`: the
// f16 weights the next mixed-precision pass reads.
// ema_update: average[i] = decay · average[i] + (1 - decay) · param[i] (f32; `lr` carries the
//   decay), the moving average of the weights a diffusion model is saved as.
// sum_of_squares: partial[g] = Σ grad² over workgroup g's CHUNK elements, for the global
//   gradient norm (clipping) and the overflow check of loss scaling (a non-finite gradient
//   makes its partial non-finite); the host adds the partials in f64.
// Tiling, adamw: one invocation per element, WG per workgroup, on a 2-D grid
// (flat = x + y · nwg.x). sum_of_squares: a workgroup per CHUNK = 8 · WG elements, a tree
// sum in workgroup memory.

struct Params {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    c1: f32,
    c2: f32,
    grad_scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<elem>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial_sums: array<f32>;
@group(0) @binding(6) var<storage, read_write> param_copy: array<elem>;
@group(0) @binding(7) var<storage, read_write> average: array<f32>;

const ITEMS: u32 = 8u;

// workgroup_sum: shaders/lib/workgroup_sum.wgsl.

// One element's step; returns the new parameter.
fn adamw_step(i: u32) -> f32 {
    let g = f32(grad[i]) * p.grad_scale;
    let m1 = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let v1 = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = m1;
    v[i] = v1;
    let update = (m1 / p.c1) / (sqrt(v1 / p.c2) + p.eps);
    let next = param[i] * (1.0 - p.lr * p.weight_decay) - p.lr * update;
    param[i] = next;
    return next;
}

@compute @workgroup_size(WG)
fn adamw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    adamw_step(i);
}

@compute @workgroup_size(WG)
fn adamw_copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    param_copy[i] = elem(adamw_step(i));
}

@compute @workgroup_size(WG)
fn ema_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    average[i] = p.lr * average[i] + (1.0 - p.lr) * param[i];
}

@compute @workgroup_size(WG)
fn sum_of_squares(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let group = wg.x + wg.y * nwg.x;
    let first = group * ITEMS * WG;
    if (first >= p.len) { return; }
    var s = 0.0;
    for (var i = 0u; i < ITEMS; i++) {
        let at = first + i * WG + lid;
        if (at < p.len) {
            let g = f32(grad[at]);
            s += g * g;
        }
    }
    let total = workgroup_sum(s, lid);
    if (lid == 0u) {
        partial_sums[group] = total;
    }
}
