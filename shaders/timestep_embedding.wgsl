// Sinusoidal timestep embedding as diffusers computes it (get_timestep_embedding):
//   angle_i = t · freq_i  (rounded to f32, as diffusers does), i < half = dim / 2
//   out[b] = [sin(angle), cos(angle)], or [cos(angle), sin(angle)] with flip_sin_to_cos,
//   and a zero last column when dim is odd.
//   timesteps: [batch] f32; freqs: [half] f32 (computed on the host, see the Rust module);
//   out: [batch, dim].
// Angles reach ~1000 rad for t = 999, where GPU sin/cos lose accuracy: the angle is first
// reduced to [-π, π] by Cody–Waite subtraction of k·2π in three parts (the first with few
// enough bits that k·C1 is exact for |k| < 2^15, and angle - k·C1 exact too), so the result
// does not depend on how a driver reduces large arguments.
// Tiling: one invocation per (sample, i) pair, WG per workgroup, 2-D grid
// (flat = x + y * num_workgroups.x); invocations past the end return.

struct Params {
    pairs: u32,
    half: u32,
    dim: u32,
    flip: u32,
}

override WG: u32 = 256u;

const INV_TWO_PI: f32 = 0.15915494309189535;
// 2π = C1 + C2 + C3 to well beyond f32 precision; C1 = 6.28125 has 8 significant bits.
const C1: f32 = 6.28125;
const C2: f32 = 0.0019353071693331003;
const C3: f32 = 1.0253131677018246e-11;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> timesteps: array<f32>;
@group(0) @binding(2) var<storage, read> freqs: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;

@compute @workgroup_size(WG)
fn timestep_embedding(@builtin(workgroup_id) wg: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let pair = (wg.x + wg.y * nwg.x) * WG + lid;
    if (pair >= p.pairs) { return; }
    let b = pair / p.half;
    let i = pair % p.half;
    let angle = timesteps[b] * freqs[i];
    let k = round(angle * INV_TWO_PI);
    let r = ((angle - k * C1) - k * C2) - k * C3;
    let s = sin(r);
    let c = cos(r);
    let row = b * p.dim;
    if (p.flip != 0u) {
        out[row + i] = elem(c);
        out[row + p.half + i] = elem(s);
    } else {
        out[row + i] = elem(s);
        out[row + p.half + i] = elem(c);
    }
    if (i == 0u && p.dim % 2u == 1u) {
        out[row + p.dim - 1u] = elem(0.0);
    }
}
