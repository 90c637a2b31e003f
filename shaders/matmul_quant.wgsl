// Tiled matmul with a block-quantized weight kept packed (prefill): y = x · Wᵀ (+ bias),
// then the fused epilogue (shaders/lib/epilogue.wgsl), W [N, K] in ggml blocks of any type
// shaders/lib/quant_blocks.wgsl decodes, f32 accumulation.
//   x: [M, K] (`elem`); y, other: [M, N]; bias: [N]; scales, quants: the re-laid blocks.
//   K is whole blocks, so a multiple of 32 = TILE_K.
// Tiling: a 16 × 16 workgroup owns a 64 × 64 tile of y (grid x = column tiles, y = row
// tiles). Per step of 32 along K it stages x's 64 × 32 tile (8 values an invocation) and W's
// 64 × 32 tile, each invocation decoding one 8-weight chunk of one row of W, in workgroup
// memory (k-major, f32); each invocation then keeps a 4 × 4 block of accumulators, rows
// lid.y + i·16 and columns lid.x + j·16. Rows past M and columns past N are masked.

// struct Params and the bindings: shaders/lib/packed_linear.wgsl.

const WG_M: u32 = 16u;
const WG_N: u32 = 16u;
const TILE: u32 = 64u;
const TILE_K: u32 = 32u;

var<workgroup> x_tile: array<f32, TILE_K * TILE>;
var<workgroup> w_tile: array<f32, TILE_K * TILE>;

// dequant8: shaders/lib/quant_blocks.wgsl; epilogue: shaders/lib/epilogue.wgsl.

@compute @workgroup_size(WG_N, WG_M)
fn matmul_quant(@builtin(workgroup_id) wg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) flat: u32) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    // This invocation's staging work: row `stage_r` of the tile, k-chunk `stage_c` (of 4).
    let stage_r = flat / 4u;
    let stage_c = flat % 4u;
    let w_row = col0 + stage_r;
    let w_live = w_row < p.n;
    let head0 = w_row * p.scale_words;
    let quant0 = w_row * p.blocks * QWORDS;
    let x_row = row0 + stage_r;

    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        let kk = 8u * stage_c;
        var w = Eight(vec4<f32>(), vec4<f32>());
        if (w_live) {
            w = dequant8(head0, quant0, (k0 + kk) / 8u);
        }
        var xs = Eight(vec4<f32>(), vec4<f32>());
        if (x_row < p.m) {
            let i = x_row * p.k + k0 + kk;
            xs = Eight(vec4<f32>(f32(x[i]), f32(x[i + 1u]), f32(x[i + 2u]), f32(x[i + 3u])),
                       vec4<f32>(f32(x[i + 4u]), f32(x[i + 5u]), f32(x[i + 6u]), f32(x[i + 7u])));
        }
        for (var j = 0u; j < 4u; j++) {
            w_tile[(kk + j) * TILE + stage_r] = w.lo[j];
            w_tile[(kk + 4u + j) * TILE + stage_r] = w.hi[j];
            x_tile[(kk + j) * TILE + stage_r] = xs.lo[j];
            x_tile[(kk + 4u + j) * TILE + stage_r] = xs.hi[j];
        }
        workgroupBarrier();

        for (var t = 0u; t < TILE_K; t++) {
            let ar = t * TILE + lid.y;
            let bc = t * TILE + lid.x;
            let av = vec4<f32>(x_tile[ar], x_tile[ar + WG_M], x_tile[ar + 2u * WG_M],
                               x_tile[ar + 3u * WG_M]);
            let bv = vec4<f32>(w_tile[bc], w_tile[bc + WG_N], w_tile[bc + 2u * WG_N],
                               w_tile[bc + 3u * WG_N]);
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }

    store_row(row0 + lid.y, col0 + lid.x, acc0);
    store_row(row0 + lid.y + WG_M, col0 + lid.x, acc1);
    store_row(row0 + lid.y + 2u * WG_M, col0 + lid.x, acc2);
    store_row(row0 + lid.y + 3u * WG_M, col0 + lid.x, acc3);
}

// Writes one row of an invocation's block: columns col, col + WG_N, ..., masked at the edges.
fn store_row(row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let cj = col + j * WG_N;
        if (cj >= p.n) { return; }
        var out = v[j];
        if (p.has_bias != 0u) {
            out += f32(bias[cj]);
        }
        let i = row * p.n + cj;
        y[i] = elem(epilogue(out, i));
    }
}
