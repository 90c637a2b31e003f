// Batched 2-D transpose: out[b, c, r] = x[b, r, c] (x: [batch, rows, cols], out: [batch,
// cols, rows]); e.g. NCHW feature maps [N, C, H·W] to token-major [N, H·W, C] and back.
// Tiling: a workgroup of TILE × TILE invocations moves one TILE × TILE block (grid x =
// column blocks, y = row blocks, z = batch) through workgroup memory, so that both the reads
// and the writes run along contiguous memory; the tile's rows are padded by one element to
// keep the transposed reads off a single bank. Edge blocks are masked.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

override TILE: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<elem>;

var<workgroup> tile: array<elem, TILE * (TILE + 1u)>;

@compute @workgroup_size(TILE, TILE)
fn transpose(@builtin(workgroup_id) wg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let base = wg.z * p.rows * p.cols;
    let r = wg.y * TILE + lid.y;
    let c = wg.x * TILE + lid.x;
    if (r < p.rows && c < p.cols) {
        tile[lid.y * (TILE + 1u) + lid.x] = x[base + r * p.cols + c];
    }
    workgroupBarrier();
    // Write the block transposed: invocation (x, y) now handles column wg.x·TILE + y, row
    // wg.y·TILE + x, so consecutive invocations write consecutive rows of `out`.
    let out_r = wg.x * TILE + lid.y;
    let out_c = wg.y * TILE + lid.x;
    if (out_r < p.cols && out_c < p.rows) {
        out[base + out_r * p.rows + out_c] = tile[lid.x * (TILE + 1u) + lid.y];
    }
}
