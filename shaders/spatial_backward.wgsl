// Gradients of the small NCHW ops of shaders/spatial.wgsl (f32 arithmetic whatever `elem`
// is):
//   upsample_nearest2x_backward: dx[n, c, y, x] = Σ of dy over the 2×2 block it was copied to;
//   avg_pool2x_backward: dx[n, c, y, x] = dy[n, c, y/2, x/2] / 4 inside the pooled area, 0 in
//     an odd last row or column (which pooling drops);
//   channel_sum: out[n, c] = Σ_hw dy[n, c, hw] (the time embedding's gradient where it was
//     added per channel);
//   split_channels: the gradient of a concatenation along channels, dy [N, Ca + Cb, plane]
//     into da [N, Ca, plane] and db [N, Cb, plane].
// Tiling: one invocation per output element (flat = (x + y · nwg.x) · WG + lid); for
// channel_sum that is one (n, c), looping over its plane in order (no barriers: a CPU adapter
// pays dearly for them, and the planes of a UNet are small).

struct Params {
    len: u32,
    plane: u32,
    channels: u32,
    channels_b: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<elem>;
@group(0) @binding(2) var<storage, read_write> dx: array<elem>;
@group(0) @binding(3) var<storage, read_write> db: array<elem>;

fn flat(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + lid;
}

// Here the "in" sizes are dx's (the forward input) and the "out" sizes dy's.
@compute @workgroup_size(WG)
fn upsample_nearest2x_backward(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.len) { return; }
    let xx = i % p.w_in;
    let y = (i / p.w_in) % p.h_in;
    let plane = i / (p.w_in * p.h_in);
    let base = plane * p.h_out * p.w_out + 2u * y * p.w_out + 2u * xx;
    let s = f32(dy[base]) + f32(dy[base + 1u]) + f32(dy[base + p.w_out])
        + f32(dy[base + p.w_out + 1u]);
    dx[i] = elem(s);
}

@compute @workgroup_size(WG)
fn avg_pool2x_backward(@builtin(workgroup_id) wg: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.len) { return; }
    let xx = i % p.w_in;
    let y = (i / p.w_in) % p.h_in;
    let plane = i / (p.w_in * p.h_in);
    var v = 0.0;
    if (y / 2u < p.h_out && xx / 2u < p.w_out) {
        v = 0.25 * f32(dy[(plane * p.h_out + y / 2u) * p.w_out + xx / 2u]);
    }
    dx[i] = elem(v);
}

@compute @workgroup_size(WG)
fn channel_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let nc = flat(wg, nwg, lid);
    if (nc >= p.len) { return; }
    var s = 0.0;
    for (var j = 0u; j < p.plane; j++) {
        s += f32(dy[nc * p.plane + j]);
    }
    dx[nc] = elem(s);
}

@compute @workgroup_size(WG)
fn split_channels(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.len) { return; }
    let total = p.channels + p.channels_b;
    let within = i % p.plane;
    let c = (i / p.plane) % total;
    let n = i / (p.plane * total);
    if (c < p.channels) {
        dx[(n * p.channels + c) * p.plane + within] = dy[i];
    } else {
        db[(n * p.channels_b + (c - p.channels)) * p.plane + within] = dy[i];
    }
}
