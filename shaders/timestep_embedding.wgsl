// Sinusoidal timestep embedding as diffusers computes it (get_timestep_embedding):
//   angle_i = t · freq_i  (rounded to f32, as diffusers does), i < half = dim / 2
//   out[b] = [sin(angle), cos(angle)], or [cos(angle), sin(angle)] with flip_sin_to_cos,
//   and a zero last column when dim is odd.
//   timesteps: [batch] f32; freqs: [half] f32 (computed on the host, see the Rust module);
//   out: [batch, dim].
// Angles reach ~1000 rad for t = 999, where GPU sin/cos lose accuracy, and WGSL promises
// sin/cos to 2^-11 absolute only inside [-π, π] (SwiftShader's are that coarse). So neither
// is used: the angle is reduced to y in [-π/4, π/4] by Cody–Waite subtraction of k·π/2 in
// three parts (the first with few enough bits that k·C1 is exact for |k| < 2^15, and
// angle - k·C1 exact too), sin y and cos y are Cephes' single-precision polynomials
// (error ~1e-7), and k mod 4 picks the quadrant: the result does not depend on the driver.
// Tiling: one invocation per (sample, i) pair, WG per workgroup, 2-D grid
// (flat = x + y * num_workgroups.x); invocations past the end return.

struct Params {
    pairs: u32,
    half: u32,
    dim: u32,
    flip: u32,
}

override WG: u32 = 256u;

const TWO_OVER_PI: f32 = 0.6366197723675814;
// π/2 = C1 + C2 + C3 to well beyond f32 precision; C1 = 1.5703125 has 8 significant bits.
const C1: f32 = 1.5703125;
const C2: f32 = 0.00048382679233327508;
const C3: f32 = 2.5632829192545615e-12;

// sin and cos of y in [-π/4, π/4] (Cephes sinf / cosf).
fn sin_small(y: f32) -> f32 {
    let z = y * y;
    return y + y * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
}

fn cos_small(y: f32) -> f32 {
    let z = y * y;
    return 1.0 - 0.5 * z
        + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2);
}

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
    let k = round(angle * TWO_OVER_PI);
    let y = ((angle - k * C1) - k * C2) - k * C3;
    let sy = sin_small(y);
    let cy = cos_small(y);
    // angle = y + k·π/2: rotate (cos y, sin y) by k quarter turns.
    let quadrant = i32(k) & 3;
    var s = sy;
    var c = cy;
    if (quadrant == 1) {
        s = cy;
        c = -sy;
    } else if (quadrant == 2) {
        s = -sy;
        c = -cy;
    } else if (quadrant == 3) {
        s = -cy;
        c = sy;
    }
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
