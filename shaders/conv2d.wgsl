// 2-D convolution, NCHW, as an implicit GEMM with f32 accumulation:
//   out[n, co, oy, ox] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[n, ci, iy, ix],
//   iy = oy·stride - pad_top + ky, ix = ox·stride - pad_left + kx (zero outside the input).
//   x: [batch, c_in, h, w]; w: [c_out, c_in, kh, kw] (diffusers' layout); bias: [c_out];
//   out: [batch, c_out, h_out, w_out]. Padding below and right of the input is implied by
//   h_out, w_out.
// GEMM view: rows = output channels (M = c_out), columns = output pixels of the whole batch
// (N = batch·h_out·w_out), K = c_in·kh·kw. The weights are row-major [M, K] as stored; the
// [K, N] patch matrix is never built: its tile is gathered from x as it is staged.
// Tiling: a workgroup of WG_N × WG_M invocations owns a (WG_M·8) × (WG_N·8) tile of
// channels × pixels (grid x = pixel tiles, y = channel tiles; the host picks a narrow WG_M
// for layers with few output channels), walks K in steps of TILE_K staging the weight and
// patch tiles in workgroup memory (f32, zero past the edges), and each invocation keeps an
// 8 × 8 block of accumulators (channels lid.y + i·WG_M, pixels lid.x + j·WG_N) in named
// registers (shaders/lib/block8x8.wgsl): 64 multiply-adds per 16 reads of workgroup memory.
// Neighbouring invocations handle neighbouring pixels, so the gathers from x and the writes
// of out are contiguous along a row.
// The gather divides nothing in its loop (integer division is slow where invocations are
// SIMD lanes of a CPU): the tile's pixels are split once into workgroup tables, each K step's
// taps one step ahead (shaders/lib/conv2d_tables.wgsl).

// struct Params: shaders/lib/conv2d_patch.wgsl.

const TM: u32 = 8u;
const TN: u32 = 8u;
override WG_M: u32 = 16u;
override WG_N: u32 = 16u;
override TILE_K: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> wt: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;

// The tiles, k-major, as quads of four consecutive channels (pixels): element (k, r) of the
// weight tile is w_tile[k · 2·WG_M + r / 4][r % 4]; the patch tile likewise with 2·WG_N.
var<workgroup> w_tile: array<vec4<f32>, TILE_K * WG_M * 2>;
var<workgroup> x_tile: array<vec4<f32>, TILE_K * WG_N * 2>;

// The gather's tables (shaders/lib/conv2d_tables.wgsl): the tile's pixels, and the taps of
// two K steps (this one and the next).
var<workgroup> pixel_base: array<i32, WG_N * TN>;
var<workgroup> pixel_row: array<i32, WG_N * TN>;
var<workgroup> pixel_col: array<i32, WG_N * TN>;
var<workgroup> tap_base: array<i32, 2 * TILE_K>;
var<workgroup> tap_row: array<i32, 2 * TILE_K>;
var<workgroup> tap_col: array<i32, 2 * TILE_K>;

@compute @workgroup_size(WG_N, WG_M)
fn conv2d(@builtin(workgroup_id) wg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) flat: u32) {
    let tile_m = WG_M * TM;
    let tile_n = WG_N * TN;
    let quads_m = tile_m / 4u;
    let quads_n = tile_n / 4u;
    let threads = WG_M * WG_N;
    let row0 = wg.y * tile_m;
    let col0 = wg.x * tile_n;
    let n_cols = p.batch * p.h_out * p.w_out;
    let k_len = p.c_in * p.kh * p.kw;

    var acc: Block8;
    for (var c = flat; c < tile_n; c += threads) {
        split_pixel(c, col0 + c, n_cols);
    }
    if (flat < TILE_K) {
        split_tap(flat, flat, k_len);
    }
    workgroupBarrier();
    for (var k0 = 0u; k0 < k_len; k0 += TILE_K) {
        // This step's taps sit in one half of the tables; the next step's go in the other.
        let half = (k0 / TILE_K) % 2u * TILE_K;
        if (flat < TILE_K) {
            split_tap(TILE_K - half + flat, k0 + TILE_K + flat, k_len);
        }
        for (var e = flat; e < quads_m * TILE_K; e += threads) {
            let q = e / TILE_K;
            let kk = e % TILE_K;
            w_tile[kk * quads_m + q] = vec4<f32>(weight_at(row0 + 4u * q, k0 + kk, k_len),
                                                 weight_at(row0 + 4u * q + 1u, k0 + kk, k_len),
                                                 weight_at(row0 + 4u * q + 2u, k0 + kk, k_len),
                                                 weight_at(row0 + 4u * q + 3u, k0 + kk, k_len));
        }
        for (var e = flat; e < quads_n * TILE_K; e += threads) {
            let kk = e / quads_n;
            let c = 4u * (e % quads_n);
            let t = half + kk;
            x_tile[kk * quads_n + c / 4u] = vec4<f32>(patch_at(c, t), patch_at(c + 1u, t),
                                                      patch_at(c + 2u, t), patch_at(c + 3u, t));
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let a0 = w_tile[kk * quads_m + lid.y];
            let a1 = w_tile[kk * quads_m + WG_M + lid.y];
            let b0 = x_tile[kk * quads_n + lid.x];
            let b1 = x_tile[kk * quads_n + WG_N + lid.x];
            block_fma(&acc, a0, a1, b0, b1);
        }
        workgroupBarrier();
    }

    // Rows 4·lid.y + i and 4·(WG_M + lid.y) + i; pixels from 4·lid.x and 4·(WG_N + lid.x).
    let r0 = row0 + 4u * lid.y;
    let r1 = row0 + 4u * (WG_M + lid.y);
    let c0 = col0 + 4u * lid.x;
    let c1 = col0 + 4u * (WG_N + lid.x);
    store_channel(r0, c0, c1, acc.r0a, acc.r0b);
    store_channel(r0 + 1u, c0, c1, acc.r1a, acc.r1b);
    store_channel(r0 + 2u, c0, c1, acc.r2a, acc.r2b);
    store_channel(r0 + 3u, c0, c1, acc.r3a, acc.r3b);
    store_channel(r1, c0, c1, acc.r4a, acc.r4b);
    store_channel(r1 + 1u, c0, c1, acc.r5a, acc.r5b);
    store_channel(r1 + 2u, c0, c1, acc.r6a, acc.r6b);
    store_channel(r1 + 3u, c0, c1, acc.r7a, acc.r7b);
}

// Weight (co, k) as f32, zero outside [c_out, k_len].
fn weight_at(co: u32, k: u32, k_len: u32) -> f32 {
    if (co < p.c_out && k < k_len) {
        return f32(wt[co * k_len + k]);
    }
    return 0.0;
}

// Writes one output channel's values for pixels lo..lo+3 and hi..hi+3, masked at the edges.
fn store_channel(co: u32, lo: u32, hi: u32, a: vec4<f32>, b: vec4<f32>) {
    if (co >= p.c_out) { return; }
    let plane = p.h_out * p.w_out;
    let n_cols = p.batch * plane;
    var bias_co = 0.0;
    if (p.has_bias != 0u) {
        bias_co = f32(bias[co]);
    }
    for (var j = 0u; j < TN; j++) {
        var pixel = lo + j;
        var v = a[j % 4u];
        if (j >= 4u) {
            pixel = hi + j - 4u;
            v = b[j % 4u];
        }
        if (pixel < n_cols) {
            let n = pixel / plane;
            out[(n * p.c_out + co) * plane + pixel % plane] = elem(v + bias_co);
        }
    }
}
