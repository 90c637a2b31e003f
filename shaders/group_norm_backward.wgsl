// GroupNorm's gradients (with the optional fused SiLU), f32 arithmetic whatever `elem` is. For
//   x̂ = (x - mean_g) · inv_std_g,  z = x̂ · weight[c] + bias[c],  y = SiLU(z) or z
// over NCHW x (a group of one sample is contiguous: channels_per_group · spatial values):
//   group_norm_backward: dz = dy · SiLU'(z) (or dy), g = dz · weight[c],
//     dx = inv_std · (g - mean_group(g) - x̂ · mean_group(g · x̂)),
//     and each group's (shift, mean - shift, inv_std) into `stats` ([N · G, 4] f32);
//   group_norm_backward_channels: per (sample, channel) the sums Σ_hw dz · x̂ and Σ_hw dz
//     into `partials` ([N, C, 2] f32), from those statistics;
//   group_norm_backward_affine: dweight[c] = Σ_n partials[n, c, 0], dbias[c] = Σ_n
//     partials[n, c, 1], in sample order (the same bits every run: no atomics).
// The statistics are computed as the forward kernel computes them: centred on the group's
// first element, mean and variance from one pass of shifted sums.
// Tiling: dx, one workgroup per (sample, group) on a 2-D grid (flat = x + y · nwg.x), WG
// invocations striding over the group and meeting in two paired workgroup sums (few barriers:
// they are what a CPU adapter pays for); channels, one invocation per (sample, channel)
// looping over its plane; affine, one invocation per channel.

struct Params {
    total_groups: u32,
    groups: u32,
    group_len: u32,
    spatial: u32,
    channels_per_group: u32,
    eps: f32,
    batch: u32,
    channels: u32,
}

override WG: u32 = 256u;
override SILU: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read> dy: array<elem>;
@group(0) @binding(5) var<storage, read_write> dx: array<elem>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(0) @binding(7) var<storage, read> partials_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> dweight: array<elem>;
@group(0) @binding(9) var<storage, read_write> dbias: array<elem>;
@group(0) @binding(10) var<storage, read_write> stats: array<f32>;
@group(0) @binding(11) var<storage, read> stats_in: array<f32>;

var<workgroup> pairs: array<vec2<f32>, WG>;

const SUM_ROW: u32 = 16u;

// The sum of `v` over the workgroup, both lanes at once; every invocation gets it. Call from
// uniform control flow. Two levels, three barriers, as shaders/lib/workgroup_sum.wgsl (WG is
// a multiple of SUM_ROW).
fn workgroup_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    pairs[lid] = v;
    workgroupBarrier();
    if (lid < WG / SUM_ROW) {
        var s = pairs[lid * SUM_ROW];
        for (var j = 1u; j < SUM_ROW; j++) {
            s += pairs[lid * SUM_ROW + j];
        }
        pairs[lid * SUM_ROW] = s;
    }
    workgroupBarrier();
    var total = pairs[0];
    for (var r = 1u; r < WG / SUM_ROW; r++) {
        total += pairs[r * SUM_ROW];
    }
    workgroupBarrier();
    return total;
}

// dz at element j of the group starting at `base`, whose channel is `c`.
fn dz_at(base: u32, j: u32, c: u32, shift: f32, delta: f32, inv_std: f32) -> vec2<f32> {
    let xhat = ((f32(x[base + j]) - shift) - delta) * inv_std;
    var d = f32(dy[base + j]);
    if (SILU) {
        let z = xhat * f32(weight[c]) + f32(bias[c]);
        let s = 1.0 / (1.0 + exp(-z));
        d *= s * (1.0 + z * (1.0 - s));
    }
    return vec2<f32>(d, xhat);
}

@compute @workgroup_size(WG)
fn group_norm_backward(@builtin(workgroup_id) wg: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let group = wg.x + wg.y * nwg.x;
    if (group >= p.total_groups) { return; }
    let base = group * p.group_len;
    let first_channel = (group % p.groups) * p.channels_per_group;
    let n = f32(p.group_len);

    let shift = f32(x[base]);
    var sums = vec2<f32>(0.0);
    for (var j = lid; j < p.group_len; j += WG) {
        let d = f32(x[base + j]) - shift;
        sums += vec2<f32>(d, d * d);
    }
    let moments = workgroup_sum2(sums, lid) / n;
    let delta = moments.x;
    let inv_std = inverseSqrt(max(moments.y - delta * delta, 0.0) + p.eps);

    var g_sums = vec2<f32>(0.0);
    for (var j = lid; j < p.group_len; j += WG) {
        let c = first_channel + j / p.spatial;
        let dzx = dz_at(base, j, c, shift, delta, inv_std);
        let g = dzx.x * f32(weight[c]);
        g_sums += vec2<f32>(g, g * dzx.y);
    }
    let means = workgroup_sum2(g_sums, lid) / n;
    for (var j = lid; j < p.group_len; j += WG) {
        let c = first_channel + j / p.spatial;
        let dzx = dz_at(base, j, c, shift, delta, inv_std);
        let g = dzx.x * f32(weight[c]);
        dx[base + j] = elem(inv_std * (g - means.x - dzx.y * means.y));
    }
    if (lid == 0u) {
        stats[group * 4u] = shift;
        stats[group * 4u + 1u] = delta;
        stats[group * 4u + 2u] = inv_std;
    }
}

@compute @workgroup_size(WG)
fn group_norm_backward_channels(@builtin(workgroup_id) wg: vec3<u32>,
                                @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let nc = (wg.x + wg.y * nwg.x) * WG + lid;
    if (nc >= p.batch * p.channels) { return; }
    let c = nc % p.channels;
    let group = (nc / p.channels) * p.groups + c / p.channels_per_group;
    let base = group * p.group_len;
    let first = (c % p.channels_per_group) * p.spatial;
    let shift = stats_in[group * 4u];
    let delta = stats_in[group * 4u + 1u];
    let inv_std = stats_in[group * 4u + 2u];
    var s_w = 0.0;
    var s_b = 0.0;
    for (var j = first; j < first + p.spatial; j++) {
        let dzx = dz_at(base, j, c, shift, delta, inv_std);
        s_w += dzx.x * dzx.y;
        s_b += dzx.x;
    }
    partials[nc * 2u] = s_w;
    partials[nc * 2u + 1u] = s_b;
}

@compute @workgroup_size(WG)
fn group_norm_backward_affine(@builtin(workgroup_id) wg: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let c = (wg.x + wg.y * nwg.x) * WG + lid;
    if (c >= p.channels) { return; }
    var s_w = 0.0;
    var s_b = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        let at = (n * p.channels + c) * 2u;
        s_w += partials_in[at];
        s_b += partials_in[at + 1u];
    }
    dweight[c] = elem(s_w);
    dbias[c] = elem(s_b);
}
