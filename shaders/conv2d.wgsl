// 2-D convolution, NCHW, as an implicit GEMM with f32 accumulation:
//   out[n, co, oy, ox] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[n, ci, iy, ix],
//   iy = oy·stride - pad_top + ky, ix = ox·stride - pad_left + kx (zero outside the input).
//   x: [batch, c_in, h, w]; w: [c_out, c_in, kh, kw] (diffusers' layout); bias: [c_out];
//   out: [batch, c_out, h_out, w_out]. Padding below and right of the input is implied by
//   h_out, w_out.
// GEMM view: rows = output channels (M = c_out), columns = output pixels of the whole batch
// (N = batch·h_out·w_out), K = c_in·kh·kw. The weights are row-major [M, K] as stored; the
// [K, N] patch matrix is never built: its tile is gathered from x as it is staged.
// Tiling: as shaders/matmul.wgsl. A workgroup of WG_N × WG_M invocations owns a
// (WG_M·4) × (WG_N·4) tile of channels × pixels (grid x = pixel tiles, y = channel tiles;
// the host picks a narrow WG_M for layers with few output channels),
// walks K in steps of TILE_K staging the weight and patch tiles in workgroup memory (f32,
// zero past the edges), and each invocation keeps a 4 × 4 block of accumulators in four
// vec4 registers. Neighbouring invocations handle neighbouring pixels, so the gathers from
// x and the writes of out are contiguous along a row.
// The gather divides nothing in its loop (integer division is slow where invocations are
// SIMD lanes of a CPU): x's index splits into a pixel part and a tap part,
//   ((n·Ci + ci)·H + iy0 + ky)·W + ix0 + kx = [(n·Ci·H + iy0)·W + ix0] + [(ci·H + ky)·W + kx],
// with iy0 = oy·stride - pad_top, ix0 = ox·stride - pad_left; the tile's pixels are split
// once, into workgroup tables, and each K step's taps one step ahead (two tables in turn).

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

var<workgroup> w_tile: array<f32, TILE_K * WG_M * TM>;
var<workgroup> x_tile: array<f32, TILE_K * WG_N * TN>;

// A pixel's part of x's index and its first input row and column; a tap's part and (ky, kx).
// Pixels past the last and taps past K get a first row far below zero: never in range.
const OUTSIDE: i32 = -(1 << 29);
var<workgroup> pixel_base: array<i32, WG_N * TN>;
var<workgroup> pixel_row: array<i32, WG_N * TN>;
var<workgroup> pixel_col: array<i32, WG_N * TN>;
var<workgroup> tap_base: array<i32, 2 * TILE_K>;
var<workgroup> tap_row: array<i32, 2 * TILE_K>;
var<workgroup> tap_col: array<i32, 2 * TILE_K>;

fn split_pixel(c: u32, pixel: u32, n_cols: u32) {
    var row = OUTSIDE;
    var col = 0;
    var base = 0;
    if (pixel < n_cols) {
        let plane = p.h_out * p.w_out;
        let n = pixel / plane;
        let rest = pixel % plane;
        row = i32((rest / p.w_out) * p.stride) - i32(p.pad_top);
        col = i32((rest % p.w_out) * p.stride) - i32(p.pad_left);
        base = (i32(n * p.c_in * p.h) + row) * i32(p.w) + col;
    }
    pixel_base[c] = base;
    pixel_row[c] = row;
    pixel_col[c] = col;
}

fn split_tap(slot: u32, k: u32, k_len: u32) {
    var row = OUTSIDE;
    var col = 0;
    var base = 0;
    if (k < k_len) {
        let taps = p.kh * p.kw;
        let ci = k / taps;
        let ky = (k % taps) / p.kw;
        let kx = k % p.kw;
        row = i32(ky);
        col = i32(kx);
        base = i32((ci * p.h + ky) * p.w + kx);
    }
    tap_base[slot] = base;
    tap_row[slot] = row;
    tap_col[slot] = col;
}

@compute @workgroup_size(WG_N, WG_M)
fn conv2d(@builtin(workgroup_id) wg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) flat: u32) {
    let tile_m = WG_M * TM;
    let tile_n = WG_N * TN;
    let threads = WG_M * WG_N;
    let row0 = wg.y * tile_m;
    let col0 = wg.x * tile_n;
    let m = p.c_out;
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
        for (var e = flat; e < tile_m * TILE_K; e += threads) {
            let r = e / TILE_K;
            let kk = e % TILE_K;
            var v = 0.0;
            if (row0 + r < m && k0 + kk < k_len) {
                v = f32(wt[(row0 + r) * k_len + k0 + kk]);
            }
            w_tile[kk * tile_m + r] = v;
        }
        for (var e = flat; e < tile_n * TILE_K; e += threads) {
            let kk = e / tile_n;
            let c = e % tile_n;
            let t = half + kk;
            let iy = pixel_row[c] + tap_row[t];
            let ix = pixel_col[c] + tap_col[t];
            var v = 0.0;
            if (u32(iy) < p.h && u32(ix) < p.w) {
                v = f32(x[pixel_base[c] + tap_base[t]]);
            }
            x_tile[kk * tile_n + c] = v;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let ar = kk * tile_m + lid.y;
            let bc = kk * tile_n + lid.x;
            let b0 = vec4<f32>(x_tile[bc], x_tile[bc + WG_N], x_tile[bc + 2u * WG_N],
                               x_tile[bc + 3u * WG_N]);
            let b1 = vec4<f32>(x_tile[bc + 4u * WG_N], x_tile[bc + 5u * WG_N],
                               x_tile[bc + 6u * WG_N], x_tile[bc + 7u * WG_N]);
            let a0 = vec4<f32>(w_tile[ar], w_tile[ar + WG_M], w_tile[ar + 2u * WG_M],
                               w_tile[ar + 3u * WG_M]);
            let a1 = vec4<f32>(w_tile[ar + 4u * WG_M], w_tile[ar + 5u * WG_M],
                               w_tile[ar + 6u * WG_M], w_tile[ar + 7u * WG_M]);
            block_fma(&acc, a0, a1, b0, b1);
        }
        workgroupBarrier();
    }

    store_channel(row0 + lid.y, col0 + lid.x, acc.r0a, acc.r0b);
    store_channel(row0 + lid.y + WG_M, col0 + lid.x, acc.r1a, acc.r1b);
    store_channel(row0 + lid.y + 2u * WG_M, col0 + lid.x, acc.r2a, acc.r2b);
    store_channel(row0 + lid.y + 3u * WG_M, col0 + lid.x, acc.r3a, acc.r3b);
    store_channel(row0 + lid.y + 4u * WG_M, col0 + lid.x, acc.r4a, acc.r4b);
    store_channel(row0 + lid.y + 5u * WG_M, col0 + lid.x, acc.r5a, acc.r5b);
    store_channel(row0 + lid.y + 6u * WG_M, col0 + lid.x, acc.r6a, acc.r6b);
    store_channel(row0 + lid.y + 7u * WG_M, col0 + lid.x, acc.r7a, acc.r7b);
}

// Writes one output channel's values for pixels col, col + WG_N, ..., masked at the edges.
fn store_channel(co: u32, col: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (co >= p.c_out) { return; }
    let plane = p.h_out * p.w_out;
    let n_cols = p.batch * plane;
    var b = 0.0;
    if (p.has_bias != 0u) {
        b = f32(bias[co]);
    }
    for (var j = 0u; j < TN; j++) {
        let pixel = col + j * WG_N;
        if (pixel >= n_cols) { return; }
        var v = lo[j % 4u];
        if (j >= 4u) { v = hi[j % 4u]; }
        let n = pixel / plane;
        out[(n * p.c_out + co) * plane + pixel % plane] = elem(v + b);
    }
}
