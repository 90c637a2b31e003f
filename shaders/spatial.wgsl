// Small NCHW ops of a UNet, one invocation per output element (WG per workgroup, 2-D grid,
// flat = x + y * num_workgroups.x; invocations past `len` return). `plane` is h·w of the
// tensor being indexed.
//   upsample_nearest2x: out[nc, y, x] = a[nc, y / 2, x / 2]            a: [N, C, h_in, w_in]
//   avg_pool2x:         out[nc, y, x] = mean of a[nc, 2y..2y+1, 2x..2x+1] (floor of odd sizes)
//   add_channel:        out[n, c, s] = a[n, c, s] + b[n, c]             (time embedding, default)
//   scale_shift_channel:out[n, c, s] = a[n, c, s] · (1 + b[n, c]) + b[n, C + c]
//                                                     (b: [N, 2C], diffusers' "scale_shift")
//   concat_channels:    out[n, 0..Ca] = a[n], out[n, Ca..Ca+Cb] = b[n]  (skip connections)

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
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;

fn flat_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn upsample_nearest2x(@builtin(workgroup_id) wg: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wg, nwg, lid);
    if (e >= p.len) { return; }
    let plane_out = p.h_out * p.w_out;
    let nc = e / plane_out;
    let y = (e % plane_out) / p.w_out;
    let x = e % p.w_out;
    out[e] = a[(nc * p.h_in + y / 2u) * p.w_in + x / 2u];
}

@compute @workgroup_size(WG)
fn avg_pool2x(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wg, nwg, lid);
    if (e >= p.len) { return; }
    let plane_out = p.h_out * p.w_out;
    let nc = e / plane_out;
    let y = (e % plane_out) / p.w_out;
    let x = e % p.w_out;
    let top = (nc * p.h_in + 2u * y) * p.w_in + 2u * x;
    let sum = f32(a[top]) + f32(a[top + 1u]) + f32(a[top + p.w_in]) + f32(a[top + p.w_in + 1u]);
    out[e] = elem(0.25 * sum);
}

@compute @workgroup_size(WG)
fn add_channel(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wg, nwg, lid);
    if (e >= p.len) { return; }
    out[e] = elem(f32(a[e]) + f32(b[e / p.plane]));
}

@compute @workgroup_size(WG)
fn scale_shift_channel(@builtin(workgroup_id) wg: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wg, nwg, lid);
    if (e >= p.len) { return; }
    let nc = e / p.plane;
    let n = nc / p.channels;
    let c = nc % p.channels;
    let scale = f32(b[n * 2u * p.channels + c]);
    let shift = f32(b[n * 2u * p.channels + p.channels + c]);
    out[e] = elem(f32(a[e]) * (1.0 + scale) + shift);
}

@compute @workgroup_size(WG)
fn concat_channels(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wg, nwg, lid);
    if (e >= p.len) { return; }
    let per_sample = (p.channels + p.channels_b) * p.plane;
    let n = e / per_sample;
    let r = e % per_sample;
    let c = r / p.plane;
    let s = r % p.plane;
    if (c < p.channels) {
        out[e] = a[(n * p.channels + c) * p.plane + s];
    } else {
        out[e] = b[(n * p.channels_b + c - p.channels) * p.plane + s];
    }
}
