// Gradients of the gated activations, f32 arithmetic whatever `elem` is. With
// y = silu(gate) · up and dy the gradient of y:
//   swiglu_backward: dgate = dy · up · silu'(gate), silu'(g) = s(g) · (1 + g · (1 - s(g))),
//                    dup   = dy · silu(gate),       s the logistic sigmoid;
//   silu_backward:   dx = dy · silu'(x), x in `gate`, dx into `dgate`;
//   gelu_backward:   dx = dy · gelu'(x), the exact (erf) GELU or, with GELU_TANH, the tanh
//                    approximation (x in `gate`, dx into `dgate`);
//   geglu_backward:  for y = gelu_tanh(gate) · up (GeGLU, Gemma's MLP),
//                    dgate = dy · up · gelu_tanh'(gate), dup = dy · gelu_tanh(gate).
// gelu_*_f, gelu_*_grad: shaders/lib/gelu.wgsl.
// Tiling: one invocation per element, WG per workgroup, on a 2-D grid (flat = x + y · nwg.x).

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;
override GELU_TANH: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<elem>;
@group(0) @binding(2) var<storage, read> up: array<elem>;
@group(0) @binding(3) var<storage, read> dy: array<elem>;
@group(0) @binding(4) var<storage, read_write> dgate: array<elem>;
@group(0) @binding(5) var<storage, read_write> dup: array<elem>;

@compute @workgroup_size(WG)
fn swiglu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    let g = f32(gate[i]);
    // 1 / (1 + exp(-g)) is 0 for g < -88 (exp overflows to inf): the correct limit.
    let s = 1.0 / (1.0 + exp(-g));
    let d = f32(dy[i]);
    dgate[i] = elem(d * f32(up[i]) * s * (1.0 + g * (1.0 - s)));
    dup[i] = elem(d * g * s);
}

// silu_backward: dx = dy · silu'(x) (x in `gate`, dy in `dy`, dx into `dgate`).
@compute @workgroup_size(WG)
fn silu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    let g = f32(gate[i]);
    let s = 1.0 / (1.0 + exp(-g));
    dgate[i] = elem(f32(dy[i]) * s * (1.0 + g * (1.0 - s)));
}

@compute @workgroup_size(WG)
fn gelu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    let g = f32(gate[i]);
    var slope = gelu_erf_grad(g);
    if (GELU_TANH) {
        slope = gelu_tanh_grad(g);
    }
    dgate[i] = elem(f32(dy[i]) * slope);
}

@compute @workgroup_size(WG)
fn geglu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    let g = f32(gate[i]);
    let d = f32(dy[i]);
    dgate[i] = elem(d * f32(up[i]) * gelu_tanh_grad(g));
    dup[i] = elem(d * gelu_tanh_f(g));
}
