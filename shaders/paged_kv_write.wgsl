// Writes new keys or values into a paged KV pool, each row to the pool row chosen for it:
//   pool[slots[r], :] = new[r, :]
//   new:   [rows, row] with row = n_kv_heads · head_dim
//   pool:  [pool_rows, row]
//   slots: [rows] u32 (the host places each token: block id · block_size + offset)
// Tiling: one invocation per element of `new`, WG per workgroup, on a 2-D grid
// (flat = x + y * num_workgroups.x); invocations past the end, or whose slot lies past the
// pool, return.

struct Params {
    len: u32,
    row: u32,
    pool_rows: u32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> new_rows: array<elem>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> pool: array<elem>;

@compute @workgroup_size(WG)
fn write_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = (wg.x + wg.y * nwg.x) * WG + lid;
    if (e >= p.len) { return; }
    let slot = slots[e / p.row];
    if (slot >= p.pool_rows) { return; }
    pool[slot * p.row + e % p.row] = new_rows[e];
}
