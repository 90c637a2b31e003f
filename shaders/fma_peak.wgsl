// Arithmetic ceiling probe: how many fused multiply-adds per second the device sustains in
// the element type, the yardstick `tessera bench` holds compute-bound kernels against (as copy
// is for bandwidth). Each invocation loads one element, runs `iterations` rounds of CHAINS
// independent vec4 FMAs in registers, x = fma(x, a, b), and stores the largest lane.
// a = 1 and b = 0 come from the uniform, so the compiler can neither fold the loop nor merge
// the chains (each starts from src[i] + b·k), and every value stays src[i] exactly: the f64
// reference is the identity. FLOPs per invocation: iterations · CHAINS · 4 lanes · 2.
// Tiling: one invocation per element, WG per workgroup, workgroups on a 2-D grid.

struct Params {
    len: u32,
    iterations: u32,
    a: f32,
    b: f32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<elem>;
@group(0) @binding(2) var<storage, read_write> dst: array<elem>;

@compute @workgroup_size(WG)
fn fma_peak(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    let a = vec4<elem>(elem(p.a));
    let b = vec4<elem>(elem(p.b));
    let lanes = vec4<elem>(elem(0.0), elem(1.0), elem(2.0), elem(3.0)) * b;
    let start = vec4<elem>(src[i]) + lanes;
    var x0 = start;
    var x1 = start + b;
    var x2 = start + b * elem(2.0);
    var x3 = start + b * elem(3.0);
    var x4 = start + b * elem(4.0);
    var x5 = start + b * elem(5.0);
    var x6 = start + b * elem(6.0);
    var x7 = start + b * elem(7.0);
    for (var it = 0u; it < p.iterations; it++) {
        x0 = fma(x0, a, b);
        x1 = fma(x1, a, b);
        x2 = fma(x2, a, b);
        x3 = fma(x3, a, b);
        x4 = fma(x4, a, b);
        x5 = fma(x5, a, b);
        x6 = fma(x6, a, b);
        x7 = fma(x7, a, b);
    }
    let m = max(max(max(x0, x1), max(x2, x3)), max(max(x4, x5), max(x6, x7)));
    dst[i] = max(max(m.x, m.y), max(m.z, m.w));
}
