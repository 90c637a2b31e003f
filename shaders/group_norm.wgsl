// GroupNorm with a per-channel affine transform and an optional fused SiLU:
//   out = act((x - mean_g) / sqrt(var_g + eps) · weight[c] + bias[c]),  act = SiLU or identity
//   x, out: [batch, channels, spatial...] (NCHW); weight, bias: [channels]. The channels
//   split into `groups` groups of channels/groups; in NCHW a group of one sample is
//   contiguous: channels_per_group · spatial values.
// Statistics in f32, two passes over the group, centred on the group's first element
// (mean = x0 + mean(x - x0), variance = mean(((x - x0) - (mean - x0))²)), so large groups
// with a large common offset keep their precision.
// Tiling: one workgroup per (sample, group), on a 2-D grid (flat = x + y * nwg.x); WG
// invocations stride over the group, partial sums meet in a workgroup-memory tree.

struct Params {
    total_groups: u32,
    groups: u32,
    group_len: u32,
    spatial: u32,
    channels_per_group: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 256u;
override SILU: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;

// workgroup_sum(v, lid): shaders/lib/workgroup_sum.wgsl.

@compute @workgroup_size(WG)
fn group_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let group = wg.x + wg.y * nwg.x;
    if (group >= p.total_groups) { return; }
    let base = group * p.group_len;
    let first_channel = (group % p.groups) * p.channels_per_group;
    let n = f32(p.group_len);

    let shift = f32(x[base]);
    var sum = 0.0;
    for (var j = lid; j < p.group_len; j += WG) {
        sum += f32(x[base + j]) - shift;
    }
    let delta = workgroup_sum(sum, lid) / n;

    var sum_sq = 0.0;
    for (var j = lid; j < p.group_len; j += WG) {
        let d = (f32(x[base + j]) - shift) - delta;
        sum_sq += d * d;
    }
    let inv_std = inverseSqrt(workgroup_sum(sum_sq, lid) / n + p.eps);

    for (var j = lid; j < p.group_len; j += WG) {
        let c = first_channel + j / p.spatial;
        var v = ((f32(x[base + j]) - shift) - delta) * inv_std * f32(weight[c]) + f32(bias[c]);
        if (SILU) {
            v = v / (1.0 + exp(-v));
        }
        out[base + j] = elem(v);
    }
}
