// Rotary position embedding, in place, in the Hugging Face "rotate half" layout used by
// Llama, Mistral and Qwen2: with half = head_dim / 2 and angle a = position · inv_freq[i],
//   x[i]        <- x[i] · cos a - x[i + half] · sin a
//   x[i + half] <- x[i + half] · cos a + x[i] · sin a            for i < half.
//   x:     [batch, seq, n_heads, head_dim]; token s has position `step.position + s`
//   table: [table_rows, head_dim] f32, row t = cos(t · inv_freq[0 .. half]) then
//          sin(t · inv_freq[0 .. half]), computed on the host in f64 (so that positions far
//          past the training context keep full f32 accuracy, whatever the GPU's sin/cos do)
// Tiling: one invocation per (batch, token, head, i) pair, WG per workgroup, on a 2-D grid
// (flat = x + y * num_workgroups.x); invocations past the end return.

struct Params {
    pairs: u32,
    seq: u32,
    n_heads: u32,
    half: u32,
}

// struct Step: shaders/lib/step.wgsl.

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<elem>;
@group(0) @binding(15) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let pair = (wg.x + wg.y * nwg.x) * WG + lid;
    if (pair >= p.pairs) { return; }
    let i = pair % p.half;
    let row = pair / p.half;                  // (batch, token, head) flattened
    let token = (row / p.n_heads) % p.seq;
    let t = (step.position + token) * (2u * p.half);
    let c = table[t + i];
    let s = table[t + p.half + i];
    let base = row * 2u * p.half;
    let x1 = f32(x[base + i]);
    let x2 = f32(x[base + p.half + i]);
    x[base + i] = elem(x1 * c - x2 * s);
    x[base + p.half + i] = elem(x2 * c + x1 * s);
}
