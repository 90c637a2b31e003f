// Appends new keys or values to a preallocated KV cache, in place:
//   cache[b, step.position + s, :, :] = new[b, s, :, :]
//   new:   [batch, new_len, row] with row = n_kv_heads · head_dim
//   cache: [batch, capacity, row]
// Tiling: one invocation per element of `new`, WG per workgroup, on a 2-D grid
// (flat = x + y * num_workgroups.x); invocations past the end return.

struct Params {
    len: u32,
    new_len: u32,
    row: u32,
    capacity: u32,
}

// struct Step: shaders/lib/step.wgsl.

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> new_rows: array<elem>;
@group(0) @binding(2) var<storage, read_write> cache: array<elem>;
@group(0) @binding(15) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn append(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let e = (wg.x + wg.y * nwg.x) * WG + lid;
    if (e >= p.len) { return; }
    let i = e % p.row;
    let s = (e / p.row) % p.new_len;
    let b = e / (p.row * p.new_len);
    cache[(b * p.capacity + step.position + s) * p.row + i] = new_rows[e];
}
