// Row gather (embedding lookup): out[r, :] = table[ids[r] - row_start, :] for every r whose id
// lies in row_start .. row_start + table_rows; other rows of `out` are left as they are, so a
// table split into several bindings is gathered by one dispatch per part.
//   ids: [n] u32; table: [table_rows, width]; out: [n, width].
// Tiling: one invocation per output element, WG per workgroup, 2-D grid
// (flat = x + y * num_workgroups.x); invocations past the end return.

struct Params {
    n: u32,
    width: u32,
    row_start: u32,
    table_rows: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<elem>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let e = (wg.x + wg.y * nwg.x) * WG + lid;
    if (e >= p.n * p.width) { return; }
    let r = e / p.width;
    let id = ids[r];
    if (id < p.row_start || id - p.row_start >= p.table_rows) { return; }
    out[e] = table[(id - p.row_start) * p.width + e % p.width];
}
