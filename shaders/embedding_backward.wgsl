// The embedding table's gradient, without atomics and in a fixed order (the same bits every
// run): the host groups the batch's positions by token id (a counting sort of ids it already
// holds), and each table row sums the output gradients of its positions in position order:
//   d_table[v, j] = Σ_{i in offsets[v] .. offsets[v + 1]} d_out[order[i], j]
//   d_out: [positions, width]; order: [positions] u32; offsets: [vocab + 1] u32;
//   d_table: [vocab, width] (rows no position names get 0).
// Tiling: one invocation per (row, column) element of d_table, WG per workgroup, on a 2-D
// grid (flat = x + y · nwg.x); neighbouring invocations read neighbouring columns.

struct Params {
    vocab: u32,
    width: u32,
    positions: u32,
    _pad: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> d_out: array<elem>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read_write> d_table: array<elem>;

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let e = (wg.x + wg.y * nwg.x) * WG + lid;
    if (e >= p.vocab * p.width) { return; }
    let v = e / p.width;
    let j = e % p.width;
    let end = min(offsets[v + 1u], p.positions);
    var s = 0.0;
    for (var i = offsets[v]; i < end; i++) {
        let at = order[i];
        if (at < p.positions) {
            s += f32(d_out[at * p.width + j]);
        }
    }
    d_table[e] = elem(s);
}
