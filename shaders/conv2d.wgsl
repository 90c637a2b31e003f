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

// struct Params: shaders/lib/conv2d_patch.wgsl.

const TM: u32 = 4u;
const TN: u32 = 4u;
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

// patch_value(k, pixel): shaders/lib/conv2d_patch.wgsl.

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

    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < k_len; k0 += TILE_K) {
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
            var v = 0.0;
            if (col0 + c < n_cols && k0 + kk < k_len) {
                v = patch_value(k0 + kk, col0 + c);
            }
            x_tile[kk * tile_n + c] = v;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let ar = kk * tile_m + lid.y;
            let bc = kk * tile_n + lid.x;
            let av = vec4<f32>(w_tile[ar], w_tile[ar + WG_M], w_tile[ar + 2u * WG_M],
                               w_tile[ar + 3u * WG_M]);
            let bv = vec4<f32>(x_tile[bc], x_tile[bc + WG_N], x_tile[bc + 2u * WG_N],
                               x_tile[bc + 3u * WG_N]);
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }

    store_channel(row0 + lid.y, col0 + lid.x, acc0);
    store_channel(row0 + lid.y + WG_M, col0 + lid.x, acc1);
    store_channel(row0 + lid.y + 2u * WG_M, col0 + lid.x, acc2);
    store_channel(row0 + lid.y + 3u * WG_M, col0 + lid.x, acc3);
}

// Writes one output channel's values for pixels col, col + WG_N, ..., masked at the edges.
fn store_channel(co: u32, col: u32, v: vec4<f32>) {
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
        let n = pixel / plane;
        out[(n * p.c_out + co) * plane + pixel % plane] = elem(v[j] + b);
    }
}
