// 2-D convolution, NCHW, as an implicit GEMM with an 8 × 8 register block per invocation:
// the same computation, operands and parameters as shaders/conv2d.wgsl (rows = output
// channels, columns = output pixels of the whole batch, K = c_in·kh·kw, patches gathered
// from x while staged), tiled as shaders/matmul_wide.wgsl: a workgroup of 16 × 16 invocations
// owns a 128 × 128 tile of channels × pixels and walks K in steps of 8; the weight tile and the
// patch tile sit k-major in workgroup memory as vec4s of four consecutive channels (pixels);
// invocation (x, y) owns channels 4y..4y+3 and 64+4y..64+4y+3 and the same pattern of pixels
// from x, reading four vec4s per k step for 64 multiply-adds. The host uses it for layers with
// at least 128 output channels; conv2d.wgsl serves the rest.

// struct Params and patch_value(k, pixel): shaders/lib/conv2d_patch.wgsl.

const TILE_K: u32 = 8u;
const QUADS: u32 = 32u; // vec4s across a tile row: 128 / 4
const HALF: u32 = 16u;  // an invocation's second block starts this many vec4s on

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> wt: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;

// [TILE_K][128 / 4]: element (k, r) is w_tile[k * QUADS + r / 4][r % 4]; x_tile likewise.
var<workgroup> w_tile: array<vec4<f32>, 256>;
var<workgroup> x_tile: array<vec4<f32>, 256>;


// Writes four consecutive pixels of output channel co (masked; they may span two images).
fn store4(co: u32, pixel: u32, v: vec4<f32>) {
    if (co >= p.c_out) { return; }
    let plane = p.h_out * p.w_out;
    let n_cols = p.batch * plane;
    var b = 0.0;
    if (p.has_bias != 0u) {
        b = f32(bias[co]);
    }
    for (var j = 0u; j < 4u; j++) {
        let px = pixel + j;
        if (px >= n_cols) { return; }
        out[(px / plane * p.c_out + co) * plane + px % plane] = elem(v[j] + b);
    }
}

@compute @workgroup_size(16, 16)
fn conv2d_wide(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(local_invocation_index) flat: u32) {
    let row0 = wg.y * 128u;
    let col0 = wg.x * 128u;
    let k_len = p.c_in * p.kh * p.kw;
    let n_cols = p.batch * p.h_out * p.w_out;

    // lN: channel row N of the block at pixels 4x..4x+3, hN: the same at 64+4x..64+4x+3.
    var l0 = vec4<f32>();
    var h0 = vec4<f32>();
    var l1 = vec4<f32>();
    var h1 = vec4<f32>();
    var l2 = vec4<f32>();
    var h2 = vec4<f32>();
    var l3 = vec4<f32>();
    var h3 = vec4<f32>();
    var l4 = vec4<f32>();
    var h4 = vec4<f32>();
    var l5 = vec4<f32>();
    var h5 = vec4<f32>();
    var l6 = vec4<f32>();
    var h6 = vec4<f32>();
    var l7 = vec4<f32>();
    var h7 = vec4<f32>();

    // Staging: weights as matmul_wide's A (invocation: channel flat / 2, four k from
    // 4 · (flat % 2)); patches as its [K, N] B (invocation: k row flat / 32, four pixels).
    let stage_r = flat / 2u;
    let stage_k = (flat % 2u) * 4u;
    let patch_k = flat / QUADS;
    let patch_q = flat % QUADS;
    for (var k0 = 0u; k0 < k_len; k0 += TILE_K) {
        let co = row0 + stage_r;
        for (var i = 0u; i < 4u; i++) {
            let kk = k0 + stage_k + i;
            var v = 0.0;
            if (co < p.c_out && kk < k_len) {
                v = f32(wt[co * k_len + kk]);
            }
            w_tile[(stage_k + i) * QUADS + stage_r / 4u][stage_r % 4u] = v;
        }
        var xv = vec4<f32>();
        let gk = k0 + patch_k;
        if (gk < k_len) {
            for (var i = 0u; i < 4u; i++) {
                let px = col0 + patch_q * 4u + i;
                if (px < n_cols) {
                    xv[i] = patch_value(gk, px);
                }
            }
        }
        x_tile[patch_k * QUADS + patch_q] = xv;
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let a_lo = w_tile[kk * QUADS + lid.y];
            let a_hi = w_tile[kk * QUADS + HALF + lid.y];
            let b_lo = x_tile[kk * QUADS + lid.x];
            let b_hi = x_tile[kk * QUADS + HALF + lid.x];
            l0 = fma(vec4<f32>(a_lo.x), b_lo, l0);
            h0 = fma(vec4<f32>(a_lo.x), b_hi, h0);
            l1 = fma(vec4<f32>(a_lo.y), b_lo, l1);
            h1 = fma(vec4<f32>(a_lo.y), b_hi, h1);
            l2 = fma(vec4<f32>(a_lo.z), b_lo, l2);
            h2 = fma(vec4<f32>(a_lo.z), b_hi, h2);
            l3 = fma(vec4<f32>(a_lo.w), b_lo, l3);
            h3 = fma(vec4<f32>(a_lo.w), b_hi, h3);
            l4 = fma(vec4<f32>(a_hi.x), b_lo, l4);
            h4 = fma(vec4<f32>(a_hi.x), b_hi, h4);
            l5 = fma(vec4<f32>(a_hi.y), b_lo, l5);
            h5 = fma(vec4<f32>(a_hi.y), b_hi, h5);
            l6 = fma(vec4<f32>(a_hi.z), b_lo, l6);
            h6 = fma(vec4<f32>(a_hi.z), b_hi, h6);
            l7 = fma(vec4<f32>(a_hi.w), b_lo, l7);
            h7 = fma(vec4<f32>(a_hi.w), b_hi, h7);
        }
        workgroupBarrier();
    }

    let r = row0 + 4u * lid.y;
    let cl = col0 + 4u * lid.x;
    store4(r + 0u, cl, l0);
    store4(r + 0u, cl + 64u, h0);
    store4(r + 1u, cl, l1);
    store4(r + 1u, cl + 64u, h1);
    store4(r + 2u, cl, l2);
    store4(r + 2u, cl + 64u, h2);
    store4(r + 3u, cl, l3);
    store4(r + 3u, cl + 64u, h3);
    store4(r + 64u, cl, l4);
    store4(r + 64u, cl + 64u, h4);
    store4(r + 65u, cl, l5);
    store4(r + 65u, cl + 64u, h5);
    store4(r + 66u, cl, l6);
    store4(r + 66u, cl + 64u, h6);
    store4(r + 67u, cl, l7);
    store4(r + 67u, cl + 64u, h7);
}
