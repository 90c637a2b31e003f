// 2-D convolution, NCHW, as an implicit GEMM on cooperative matrices (tensor cores), with
// f16 inputs and f32 accumulation (`elem` = f16): the operation and layouts of
// shaders/conv2d.wgsl,
//   out[n, co, oy, ox] = bias[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[n, ci, iy, ix].
// GEMM view: rows = output channels (M = c_out), columns = output pixels of the whole batch
// (N = batch·h_out·w_out), K = c_in·kh·kw; A is the weight, row-major [M, K] as stored, and
// B the patch matrix, gathered from x as it is staged (shaders/lib/conv2d_patch.wgsl).
// Tiling: shaders/lib/coop_gemm.wgsl. A workgroup of eight subgroups (WG = 8 × the adapter's
// subgroup size) owns TILE × TILE (8F × 8F) channels × pixels: grid x = pixel tiles,
// y = channel tiles. This file supplies the operand reads and the masked NCHW store.
enable wgpu_cooperative_matrix;

// struct Params: shaders/lib/conv2d_patch.wgsl.

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> wt: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;

// coop_gemm, TILE: shaders/lib/coop_gemm.wgsl. patch_value(k, pixel):
// shaders/lib/conv2d_patch.wgsl.

fn load_a(co: u32, kk: u32) -> f16 {
    let k_len = p.c_in * p.kh * p.kw;
    if (co < p.c_out && kk < k_len) {
        return f16(wt[co * k_len + kk]);
    }
    return f16(0.0);
}

fn load_b(kk: u32, pixel: u32) -> f16 {
    if (pixel < p.batch * p.h_out * p.w_out && kk < p.c_in * p.kh * p.kw) {
        return f16(patch_value(kk, pixel));
    }
    return f16(0.0);
}

// Neighbouring pixels are neighbours in x: stage along the pixels.
fn b_along_k() -> bool {
    return false;
}

fn store_c(co: u32, pixel: u32, v: f32) {
    let plane = p.h_out * p.w_out;
    if (co >= p.c_out || pixel >= p.batch * plane) {
        return;
    }
    var value = v;
    if (p.has_bias != 0u) {
        value += f32(bias[co]);
    }
    let n = pixel / plane;
    out[(n * p.c_out + co) * plane + pixel % plane] = elem(value);
}

@compute @workgroup_size(WG)
fn conv2d_coop(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(local_invocation_index) flat: u32,
               @builtin(subgroup_id) sg: u32,
               @builtin(subgroup_invocation_id) lane: u32,
               @builtin(subgroup_size) lanes: u32) {
    coop_gemm(wg.y * TILE, wg.x * TILE, p.c_in * p.kh * p.kw, flat, sg, lane, lanes);
}
