// Tiled matmul: c[b] = a[b] · B[b] (+ bias), then an optional fused epilogue (a residual
// add, or SwiGLU against a gate tensor; see `epilogue`), f32 accumulation whatever `elem` is.
//   a: [batch, M, K] row-major; B: [batch, K, N] (B_NK = false) or [batch, N, K] (B_NK = true,
//   the layout of a checkpoint's Linear weight); bias: [N]; c: [batch, M, N]. A batch stride of
//   0 shares one operand across the batch.
// Tiling: a workgroup of WG_N × WG_M invocations owns a (WG_M·TM) × (WG_N·TN) tile of c
// (workgroup grid x = column tiles, y = row tiles, z = batch). It walks K in steps of TILE_K,
// staging the A and B tiles in workgroup memory (k-major, zero-filled past the matrix edges,
// converted to f32); each invocation keeps a 4 × 4 block of accumulators in four vec4
// registers, rows lid.y + i·WG_M and columns lid.x + j·WG_N, so neighbouring invocations read
// neighbouring workgroup-memory words. Any M, N, K works; edge tiles are masked.

// struct Params: shaders/lib/matmul_params.wgsl.

// The register block is 4 × 4: the code below is written out for it.
const TM: u32 = 4u;
const TN: u32 = 4u;
override WG_M: u32 = 16u;
override WG_N: u32 = 16u;
override TILE_K: u32 = 16u;
override B_NK: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> c: array<elem>;
@group(0) @binding(5) var<storage, read> other: array<elem>;

// epilogue(v, i): shaders/lib/epilogue.wgsl.

var<workgroup> a_tile: array<f32, TILE_K * WG_M * TM>;
var<workgroup> b_tile: array<f32, TILE_K * WG_N * TN>;

@compute @workgroup_size(WG_N, WG_M)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) flat: u32) {
    let tile_m = WG_M * TM;
    let tile_n = WG_N * TN;
    let threads = WG_M * WG_N;
    let row0 = wg.y * tile_m;
    let col0 = wg.x * tile_n;
    let a_base = wg.z * p.batch_stride_a;
    let b_base = wg.z * p.batch_stride_b;
    let c_base = wg.z * p.batch_stride_c;

    // Row i of the invocation's 4 × 4 block of c is acc[i]; columns are the vector lanes.
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        // A tile, tile_m × TILE_K: consecutive invocations read consecutive k of one row.
        for (var e = flat; e < tile_m * TILE_K; e += threads) {
            let r = e / TILE_K;
            let kk = e % TILE_K;
            let gr = row0 + r;
            let gk = k0 + kk;
            var v = 0.0;
            if (gr < p.m && gk < p.k) {
                v = f32(a[a_base + gr * p.k + gk]);
            }
            a_tile[kk * tile_m + r] = v;
        }
        // B tile, TILE_K × tile_n, read along B's contiguous axis.
        if (B_NK) {
            for (var e = flat; e < tile_n * TILE_K; e += threads) {
                let cn = e / TILE_K;
                let kk = e % TILE_K;
                let gn = col0 + cn;
                let gk = k0 + kk;
                var v = 0.0;
                if (gn < p.n && gk < p.k) {
                    v = f32(b[b_base + gn * p.k + gk]);
                }
                b_tile[kk * tile_n + cn] = v;
            }
        } else {
            for (var e = flat; e < tile_n * TILE_K; e += threads) {
                let kk = e / tile_n;
                let cn = e % tile_n;
                let gn = col0 + cn;
                let gk = k0 + kk;
                var v = 0.0;
                if (gn < p.n && gk < p.k) {
                    v = f32(b[b_base + gk * p.n + gn]);
                }
                b_tile[kk * tile_n + cn] = v;
            }
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let ar = kk * tile_m + lid.y;
            let bc = kk * tile_n + lid.x;
            let av = vec4<f32>(a_tile[ar], a_tile[ar + WG_M], a_tile[ar + 2u * WG_M],
                               a_tile[ar + 3u * WG_M]);
            let bv = vec4<f32>(b_tile[bc], b_tile[bc + WG_N], b_tile[bc + 2u * WG_N],
                               b_tile[bc + 3u * WG_N]);
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }

    store_row(row0 + lid.y, col0 + lid.x, c_base, acc0);
    store_row(row0 + lid.y + WG_M, col0 + lid.x, c_base, acc1);
    store_row(row0 + lid.y + 2u * WG_M, col0 + lid.x, c_base, acc2);
    store_row(row0 + lid.y + 3u * WG_M, col0 + lid.x, c_base, acc3);
}

// Writes one row of an invocation's block: columns col, col + WG_N, ..., masked at the edges.
fn store_row(row: u32, col: u32, c_base: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < TN; j++) {
        let cj = col + j * WG_N;
        if (cj >= p.n) { return; }
        var out = v[j];
        if (p.has_bias != 0u) {
            out += f32(bias[cj]);
        }
        let i = c_base + row * p.n + cj;
        c[i] = elem(epilogue(out, i));
    }
}
