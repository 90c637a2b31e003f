// A 2-D convolution's weight gradient as a tiled GEMM with f32 accumulation:
//   dw[co, ci, ky, kx] = Σ_{n, oy, ox} dy[n, co, oy, ox] · x[n, ci, oy·s - pt + ky, ox·s - pl + kx]
// (zero outside x), x [N, Ci, H, W], dy [N, Co, Ho, Wo], dw [Co, Ci, KH, KW].
// GEMM view: rows = output channels (M = Co), columns = taps (N = Ci·KH·KW, dw's own
// layout), the sum over the output pixels of the whole batch (K = N·Ho·Wo). dy is read as it
// is stored (its [Co, pixels] tile is contiguous along pixels); the [pixels, taps] patch
// matrix is never built: its tile is gathered from x as it is staged.
// Tiling: as shaders/conv2d.wgsl with K and N exchanged. A workgroup of WG_N × WG_M
// invocations owns a (WG_M·4) × (WG_N·4) tile of channels × taps (grid x = tap tiles, y =
// channel tiles; the host picks a narrow WG_M for few output channels), walks the pixels in
// steps of TILE_P staging both tiles in workgroup memory (f32, zero past the edges), and each
// invocation keeps a 4 × 4 block of accumulators in four vec4 registers. Every sum runs in
// pixel order: the same bits every run, no atomics.
// The gather divides nothing in its loop: x's index splits into a pixel part and a tap part,
//   ((n·Ci + ci)·H + iy0 + ky)·W + ix0 + kx = [(n·Ci·H + iy0)·W + ix0] + [(ci·H + ky)·W + kx],
// iy0 = oy·s - pt, ix0 = ox·s - pl; the tile's taps are split once into workgroup tables and
// each step's pixels one step ahead (two tables in turn).

struct Params {
    batch: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
}

const TM: u32 = 8u;
const TN: u32 = 8u;
override WG_M: u32 = 16u;
override WG_N: u32 = 16u;
override TILE_P: u32 = 16u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<elem>;
@group(0) @binding(3) var<storage, read> x: array<elem>;
@group(0) @binding(5) var<storage, read_write> dw: array<elem>;

var<workgroup> dy_tile: array<f32, TILE_P * WG_M * TM>;
var<workgroup> x_tile: array<f32, TILE_P * WG_N * TN>;

// A tap's part of x's index and its (ky, kx); a pixel's part of dy's and x's indices and its
// first input row and column. Taps past the last get a row far below zero: never in range.
const OUTSIDE: i32 = -(1 << 29);
var<workgroup> tap_base: array<i32, WG_N * TN>;
var<workgroup> tap_row: array<i32, WG_N * TN>;
var<workgroup> tap_col: array<i32, WG_N * TN>;
var<workgroup> pixel_dy: array<u32, 2 * TILE_P>;
var<workgroup> pixel_base: array<i32, 2 * TILE_P>;
var<workgroup> pixel_row: array<i32, 2 * TILE_P>;
var<workgroup> pixel_col: array<i32, 2 * TILE_P>;

fn split_tap(c: u32, k: u32, k_len: u32) {
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
    tap_base[c] = base;
    tap_row[c] = row;
    tap_col[c] = col;
}

fn split_pixel(slot: u32, pixel: u32, pixels: u32) {
    var row = OUTSIDE;
    var col = 0;
    var base = 0;
    var at = 0u;
    if (pixel < pixels) {
        let plane = p.h_out * p.w_out;
        let n = pixel / plane;
        let rest = pixel % plane;
        row = i32((rest / p.w_out) * p.stride) - i32(p.pad_top);
        col = i32((rest % p.w_out) * p.stride) - i32(p.pad_left);
        base = (i32(n * p.c_in * p.h) + row) * i32(p.w) + col;
        at = n * p.c_out * plane + rest;
    }
    pixel_dy[slot] = at;
    pixel_base[slot] = base;
    pixel_row[slot] = row;
    pixel_col[slot] = col;
}

@compute @workgroup_size(WG_N, WG_M)
fn conv2d_weight_grad(@builtin(workgroup_id) wg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>,
                      @builtin(local_invocation_index) flat: u32) {
    let tile_m = WG_M * TM;
    let tile_n = WG_N * TN;
    let threads = WG_M * WG_N;
    let row0 = wg.y * tile_m;
    let col0 = wg.x * tile_n;
    let plane = p.h_out * p.w_out;
    let pixels = p.batch * plane;
    let k_len = p.c_in * p.kh * p.kw;

    for (var c = flat; c < tile_n; c += threads) {
        split_tap(c, col0 + c, k_len);
    }
    if (flat < TILE_P) {
        split_pixel(flat, flat, pixels);
    }
    workgroupBarrier();

    var acc: Block8;
    for (var p0 = 0u; p0 < pixels; p0 += TILE_P) {
        // This step's pixels sit in one half of the tables; the next step's go in the other.
        let half = (p0 / TILE_P) % 2u * TILE_P;
        if (flat < TILE_P) {
            split_pixel(TILE_P - half + flat, p0 + TILE_P + flat, pixels);
        }
        for (var e = flat; e < tile_m * TILE_P; e += threads) {
            let r = e / TILE_P;
            let pp = e % TILE_P;
            var v = 0.0;
            if (row0 + r < p.c_out && p0 + pp < pixels) {
                v = f32(dy[pixel_dy[half + pp] + (row0 + r) * plane]);
            }
            dy_tile[pp * tile_m + r] = v;
        }
        for (var e = flat; e < tile_n * TILE_P; e += threads) {
            let pp = e / tile_n;
            let c = e % tile_n;
            let iy = pixel_row[half + pp] + tap_row[c];
            let ix = pixel_col[half + pp] + tap_col[c];
            var v = 0.0;
            if (u32(iy) < p.h && u32(ix) < p.w) {
                v = f32(x[pixel_base[half + pp] + tap_base[c]]);
            }
            x_tile[pp * tile_n + c] = v;
        }
        workgroupBarrier();

        for (var pp = 0u; pp < TILE_P; pp++) {
            let ar = pp * tile_m + lid.y;
            let bc = pp * tile_n + lid.x;
            let b0 = vec4<f32>(x_tile[bc], x_tile[bc + WG_N], x_tile[bc + 2u * WG_N],
                               x_tile[bc + 3u * WG_N]);
            let b1 = vec4<f32>(x_tile[bc + 4u * WG_N], x_tile[bc + 5u * WG_N],
                               x_tile[bc + 6u * WG_N], x_tile[bc + 7u * WG_N]);
            let a0 = vec4<f32>(dy_tile[ar], dy_tile[ar + WG_M], dy_tile[ar + 2u * WG_M],
                               dy_tile[ar + 3u * WG_M]);
            let a1 = vec4<f32>(dy_tile[ar + 4u * WG_M], dy_tile[ar + 5u * WG_M],
                               dy_tile[ar + 6u * WG_M], dy_tile[ar + 7u * WG_M]);
            block_fma(&acc, a0, a1, b0, b1);
        }
        workgroupBarrier();
    }

    store_row(row0 + lid.y, col0 + lid.x, k_len, acc.r0a, acc.r0b);
    store_row(row0 + lid.y + WG_M, col0 + lid.x, k_len, acc.r1a, acc.r1b);
    store_row(row0 + lid.y + 2u * WG_M, col0 + lid.x, k_len, acc.r2a, acc.r2b);
    store_row(row0 + lid.y + 3u * WG_M, col0 + lid.x, k_len, acc.r3a, acc.r3b);
    store_row(row0 + lid.y + 4u * WG_M, col0 + lid.x, k_len, acc.r4a, acc.r4b);
    store_row(row0 + lid.y + 5u * WG_M, col0 + lid.x, k_len, acc.r5a, acc.r5b);
    store_row(row0 + lid.y + 6u * WG_M, col0 + lid.x, k_len, acc.r6a, acc.r6b);
    store_row(row0 + lid.y + 7u * WG_M, col0 + lid.x, k_len, acc.r7a, acc.r7b);
}

// Writes one output channel's gradients for taps k, k + WG_N, ..., masked at the edges.
fn store_row(co: u32, k: u32, k_len: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (co >= p.c_out) { return; }
    for (var j = 0u; j < TN; j++) {
        let kj = k + j * WG_N;
        if (kj >= k_len) { return; }
        var v = lo[j % 4u];
        if (j >= 4u) { v = hi[j % 4u]; }
        dw[co * k_len + kj] = elem(v);
    }
}
