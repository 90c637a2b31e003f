// Matmul on cooperative matrices (tensor cores): c[b] = a[b] · B[b] (+ bias), then the
// optional fused epilogue of shaders/matmul.wgsl, with f16 inputs and f32 accumulation
// (`elem` = f16). Same operands and parameters as shaders/matmul.wgsl:
//   a: [batch, M, K] row-major; B: [batch, K, N] (B_NK = false) or [batch, N, K] (B_NK = true);
//   bias: [N]; c: [batch, M, N]; a batch stride of 0 shares an operand across the batch.
// Tiling: shaders/lib/coop_gemm.wgsl. A workgroup of eight subgroups (WG = 8 × the adapter's
// subgroup size) owns a TILE × TILE (8F × 8F) tile of c: grid x = column tiles, y = row
// tiles, z = batch. This file supplies the operand reads (a [N, K] B is read along k, so
// its global reads stay contiguous) and the masked store with bias and epilogue.
enable wgpu_cooperative_matrix;

// struct Params: shaders/lib/matmul_params.wgsl.

override WG: u32 = 64u;
override B_NK: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> c: array<elem>;
@group(0) @binding(5) var<storage, read> other: array<elem>;

// This workgroup's matrix of the batch, as offsets into a, b and c.
var<private> a_base: u32;
var<private> b_base: u32;
var<private> c_base: u32;

// coop_gemm, TILE: shaders/lib/coop_gemm.wgsl. epilogue(v, i): shaders/lib/epilogue.wgsl.

fn load_a(row: u32, kk: u32) -> f16 {
    if (row < p.m && kk < p.k) {
        return f16(a[a_base + row * p.k + kk]);
    }
    return f16(0.0);
}

fn load_b(kk: u32, col: u32) -> f16 {
    if (col >= p.n || kk >= p.k) {
        return f16(0.0);
    }
    if (B_NK) {
        return f16(b[b_base + col * p.k + kk]);
    }
    return f16(b[b_base + kk * p.n + col]);
}

fn b_along_k() -> bool {
    return B_NK;
}

fn store_c(row: u32, col: u32, v: f32) {
    if (row >= p.m || col >= p.n) {
        return;
    }
    var value = v;
    if (p.has_bias != 0u) {
        value += f32(bias[col]);
    }
    let o = c_base + row * p.n + col;
    c[o] = elem(epilogue(value, o));
}

@compute @workgroup_size(WG)
fn matmul_coop(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(local_invocation_index) flat: u32,
               @builtin(subgroup_id) sg: u32,
               @builtin(subgroup_invocation_id) lane: u32,
               @builtin(subgroup_size) lanes: u32) {
    a_base = wg.z * p.batch_stride_a;
    b_base = wg.z * p.batch_stride_b;
    c_base = wg.z * p.batch_stride_c;
    coop_gemm(wg.y * TILE, wg.x * TILE, p.k, flat, sg, lane, lanes);
}
