// One DDPM / DDIM sampler step on the whole batch, in place:
//   x0   = k_sample · x + k_model · m, clipped to ±clip_range when clip != 0
//   eps  = e_sample · x + e_model · m
//   x   <- a_x0 · x0 + a_sample · x + a_eps · eps + noise_scale · z
// x: the current sample, m: the UNet's output, z: Gaussian noise drawn for this step. The
// coefficients come from the host each step (the uniform is rewritten, the call reused).
// Tiling: one invocation per element, WG per workgroup, 2-D grid
// (flat = x + y * num_workgroups.x); invocations past `len` return.

struct Coefficients {
    k_sample: f32,
    k_model: f32,
    a_x0: f32,
    a_sample: f32,
    a_eps: f32,
    e_sample: f32,
    e_model: f32,
    noise_scale: f32,
    clip_range: f32,
    clip: u32,
    len: u32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> c: Coefficients;
@group(0) @binding(1) var<storage, read_write> sample: array<elem>;
@group(0) @binding(2) var<storage, read> model_output: array<elem>;
@group(0) @binding(3) var<storage, read> noise: array<elem>;

@compute @workgroup_size(WG)
fn scheduler_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= c.len) { return; }
    let x = f32(sample[i]);
    let m = f32(model_output[i]);
    var x0 = c.k_sample * x + c.k_model * m;
    if (c.clip != 0u) {
        x0 = clamp(x0, -c.clip_range, c.clip_range);
    }
    let eps = c.e_sample * x + c.e_model * m;
    sample[i] = elem(c.a_x0 * x0 + c.a_sample * x + c.a_eps * eps + c.noise_scale * f32(noise[i]));
}
