// Row gather from a block-quantized table kept packed (embedding lookup):
// out[r, :] = dequantized table[ids[r] - row_start, :] for every r whose id lies in
// row_start .. row_start + table_rows; other rows of `out` are left as they are (a table split
// into parts is gathered by one dispatch per part). The table is [table_rows, width] in ggml
// blocks (shaders/lib/quant_blocks.wgsl decodes them); width is whole blocks.
//   ids: [n] u32; out: [n, width] (`elem`).
// Tiling: one invocation per 8 consecutive outputs (one decoded chunk), WG per workgroup, on a
// 2-D grid (flat = x + y * num_workgroups.x); invocations past the end return.

struct Params {
    n: u32,
    width: u32,
    row_start: u32,
    table_rows: u32,
    blocks: u32,
    scale_words: u32,
    pad0: u32,
    pad1: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> quants: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;

// dequant8: shaders/lib/quant_blocks.wgsl.

@compute @workgroup_size(WG)
fn gather_quant(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let chunk = (wg.x + wg.y * nwg.x) * WG + lid;
    let chunks_per_row = p.width / 8u;
    if (chunk >= p.n * chunks_per_row) { return; }
    let r = chunk / chunks_per_row;
    let c = chunk % chunks_per_row;
    let id = ids[r];
    if (id < p.row_start || id - p.row_start >= p.table_rows) { return; }
    let row = id - p.row_start;
    let w = dequant8(row * p.scale_words, row * p.blocks * QWORDS, c);
    let o = r * p.width + 8u * c;
    for (var j = 0u; j < 4u; j++) {
        out[o + j] = elem(w.lo[j]);
        out[o + 4u + j] = elem(w.hi[j]);
    }
}
