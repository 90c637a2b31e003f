// A 2-D convolution's weight gradient as a tiled GEMM with f32 accumulation:
//   dw[co, ci, ky, kx] = Σ_{n, oy, ox} dy[n, co, oy, ox] · x[n, ci, oy·s - pt + ky, ox·s - pl + kx]
// (zero outside x), x [N, Ci, H, W], dy [N, Co, Ho, Wo], dw [Co, Ci, KH, KW].
// GEMM view: rows = output channels (M = Co), columns = taps (N = Ci·KH·KW, dw's own
// layout), the sum over the output pixels of the whole batch (K = N·Ho·Wo). dy is read as it
// is stored (its [Co, pixels] tile is contiguous along pixels); the [pixels, taps] patch
// matrix is never built: its tile is gathered from x as it is staged.
// Tiling: as shaders/conv2d.wgsl with K and N exchanged. A workgroup of WG_N × WG_M
// invocations owns a (WG_M·8) × (WG_N·8) tile of channels × taps (grid x = tap tiles, y =
// channel tiles; the host picks a narrow WG_M for few output channels), walks the pixels in
// steps of TILE_P staging both tiles in workgroup memory (f32, zero past the edges), and each
// invocation keeps an 8 × 8 block of accumulators (shaders/lib/block8x8.wgsl). Every sum
// runs in pixel order: the same bits every run, no atomics.
// The gather divides nothing in its loop: the tile's taps are split once into workgroup
// tables, each step's pixels one step ahead (shaders/lib/conv2d_tables.wgsl).

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

// The tiles, pixel-major, as quads of four consecutive channels (taps): element (pixel, r) of
// the gradient tile is dy_tile[pixel · 2·WG_M + r / 4][r % 4]; the patch tile likewise.
var<workgroup> dy_tile: array<vec4<f32>, TILE_P * WG_M * 2>;
var<workgroup> x_tile: array<vec4<f32>, TILE_P * WG_N * 2>;

// The gather's tables (shaders/lib/conv2d_tables.wgsl): the tile's taps, and the pixels of
// two steps (this one and the next), with each pixel's offset in dy.
var<workgroup> tap_base: array<i32, WG_N * TN>;
var<workgroup> tap_row: array<i32, WG_N * TN>;
var<workgroup> tap_col: array<i32, WG_N * TN>;
var<workgroup> pixel_base: array<i32, 2 * TILE_P>;
var<workgroup> pixel_row: array<i32, 2 * TILE_P>;
var<workgroup> pixel_col: array<i32, 2 * TILE_P>;
var<workgroup> pixel_dy: array<u32, 2 * TILE_P>;

// Splits pixel `pixel` into table slot `slot`, with its offset n·Co·Ho·Wo + oy·Wo + ox in dy.
fn split_pixel_dy(slot: u32, pixel: u32, pixels: u32) {
    let at = split_pixel(slot, pixel, pixels);
    pixel_dy[slot] = at.x * p.c_out * p.h_out * p.w_out + at.y;
}

@compute @workgroup_size(WG_N, WG_M)
fn conv2d_weight_grad(@builtin(workgroup_id) wg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>,
                      @builtin(local_invocation_index) flat: u32) {
    let tile_m = WG_M * TM;
    let tile_n = WG_N * TN;
    let quads_m = tile_m / 4u;
    let quads_n = tile_n / 4u;
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
        split_pixel_dy(flat, flat, pixels);
    }
    workgroupBarrier();

    var acc: Block8;
    for (var p0 = 0u; p0 < pixels; p0 += TILE_P) {
        // This step's pixels sit in one half of the tables; the next step's go in the other.
        let half = (p0 / TILE_P) % 2u * TILE_P;
        if (flat < TILE_P) {
            split_pixel_dy(TILE_P - half + flat, p0 + TILE_P + flat, pixels);
        }
        for (var e = flat; e < quads_m * TILE_P; e += threads) {
            let q = e / TILE_P;
            let pp = e % TILE_P;
            let t = half + pp;
            let valid = p0 + pp < pixels;
            dy_tile[pp * quads_m + q] = vec4<f32>(dy_at(row0 + 4u * q, t, plane, valid),
                                                  dy_at(row0 + 4u * q + 1u, t, plane, valid),
                                                  dy_at(row0 + 4u * q + 2u, t, plane, valid),
                                                  dy_at(row0 + 4u * q + 3u, t, plane, valid));
        }
        for (var e = flat; e < quads_n * TILE_P; e += threads) {
            let pp = e / quads_n;
            let c = 4u * (e % quads_n);
            let t = half + pp;
            x_tile[pp * quads_n + c / 4u] = vec4<f32>(patch_at(t, c), patch_at(t, c + 1u),
                                                      patch_at(t, c + 2u), patch_at(t, c + 3u));
        }
        workgroupBarrier();

        for (var pp = 0u; pp < TILE_P; pp++) {
            let a0 = dy_tile[pp * quads_m + lid.y];
            let a1 = dy_tile[pp * quads_m + WG_M + lid.y];
            let b0 = x_tile[pp * quads_n + lid.x];
            let b1 = x_tile[pp * quads_n + WG_N + lid.x];
            block_fma(&acc, a0, a1, b0, b1);
        }
        workgroupBarrier();
    }

    // Channels 4·lid.y + i and 4·(WG_M + lid.y) + i; taps from 4·lid.x and 4·(WG_N + lid.x).
    let r0 = row0 + 4u * lid.y;
    let r1 = row0 + 4u * (WG_M + lid.y);
    let c0 = col0 + 4u * lid.x;
    let c1 = col0 + 4u * (WG_N + lid.x);
    store_row(r0, c0, c1, k_len, acc.r0a, acc.r0b);
    store_row(r0 + 1u, c0, c1, k_len, acc.r1a, acc.r1b);
    store_row(r0 + 2u, c0, c1, k_len, acc.r2a, acc.r2b);
    store_row(r0 + 3u, c0, c1, k_len, acc.r3a, acc.r3b);
    store_row(r1, c0, c1, k_len, acc.r4a, acc.r4b);
    store_row(r1 + 1u, c0, c1, k_len, acc.r5a, acc.r5b);
    store_row(r1 + 2u, c0, c1, k_len, acc.r6a, acc.r6b);
    store_row(r1 + 3u, c0, c1, k_len, acc.r7a, acc.r7b);
}

// dy at channel co and the pixel in table slot t, zero past the channels or the pixels.
fn dy_at(co: u32, t: u32, plane: u32, valid: bool) -> f32 {
    if (valid && co < p.c_out) {
        return f32(dy[pixel_dy[t] + co * plane]);
    }
    return 0.0;
}

// Writes one output channel's gradients for taps lo..lo+3 and hi..hi+3, masked at the edges.
fn store_row(co: u32, lo: u32, hi: u32, k_len: u32, a: vec4<f32>, b: vec4<f32>) {
    if (co >= p.c_out) { return; }
    for (var j = 0u; j < TN; j++) {
        var k = lo + j;
        var v = a[j % 4u];
        if (j >= 4u) {
            k = hi + j - 4u;
            v = b[j % 4u];
        }
        if (k < k_len) {
            dw[co * k_len + k] = elem(v);
        }
    }
}
