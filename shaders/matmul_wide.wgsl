// Tiled matmul with an 8 × 8 register block: c[b] = a[b] · B[b] (+ bias), then the optional
// fused epilogue of shaders/matmul.wgsl, f32 accumulation whatever `elem` is. Same operands
// and parameters as shaders/matmul.wgsl:
//   a: [batch, M, K] row-major; B: [batch, K, N] (B_NK = false) or [batch, N, K] (B_NK = true);
//   bias: [N]; c: [batch, M, N]; a batch stride of 0 shares an operand across the batch.
// Tiling: a workgroup of 16 × 16 invocations owns a 128 × 128 tile of c (grid x = column
// tiles, y = row tiles, z = batch) and walks K in steps of TILE_K = 8. The A and B tiles are
// staged k-major in workgroup memory as vec4s of four consecutive rows (columns), converted
// to f32 and zero-filled past the edges; each invocation loads four contiguous elements of a
// row of A (and of B along its contiguous axis). Invocation (x, y) owns rows 4y..4y+3 and
// 64+4y..64+4y+3 and the same pattern of columns from x, so per k step it reads four vec4s
// from workgroup memory for 64 multiply-adds (the 4 × 4 kernel of matmul.wgsl reads eight
// scalars for 16). Any M, N, K works; edge tiles are masked on store.

// struct Params: shaders/lib/matmul_params.wgsl.

const TILE: u32 = 128u;
const TILE_K: u32 = 8u;
const QUADS: u32 = 32u; // vec4s across a tile row: TILE / 4
const HALF: u32 = 16u;  // the second block of an invocation's rows starts this many vec4s on
override B_NK: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> c: array<elem>;
@group(0) @binding(5) var<storage, read> other: array<elem>;

// [TILE_K][TILE / 4] vec4s: element (k, r) is a_tile[k * QUADS + r / 4][r % 4].
// epilogue(v, i): shaders/lib/epilogue.wgsl.

var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

// Four consecutive-k values of one row of a [rows, K] matrix (zero past the edges).
fn load_k4(src_is_a: bool, base: u32, row: u32, rows: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>();
    if (row >= rows) { return v; }
    for (var i = 0u; i < 4u; i++) {
        if (k + i < p.k) {
            if (src_is_a) {
                v[i] = f32(a[base + row * p.k + k + i]);
            } else {
                v[i] = f32(b[base + row * p.k + k + i]);
            }
        }
    }
    return v;
}

@compute @workgroup_size(16, 16)
fn matmul_wide(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(local_invocation_index) flat: u32) {
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let a_base = wg.z * p.batch_stride_a;
    let b_base = wg.z * p.batch_stride_b;
    let c_base = wg.z * p.batch_stride_c;

    // lN holds row N of the invocation's block (rows 4y..4y+3, then 64+4y..64+4y+3) at
    // columns 4x..4x+3, hN the same row at columns 64+4x..64+4x+3. Written out, not as arrays,
    // so that every compiler keeps them in registers.
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

    // Staging: invocation `flat` loads row (or column) flat / 2, k offset 4 · (flat % 2).
    let stage_r = flat / 2u;
    let stage_k = (flat % 2u) * 4u;
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        let av = load_k4(true, a_base, row0 + stage_r, p.m, k0 + stage_k);
        for (var i = 0u; i < 4u; i++) {
            a_tile[(stage_k + i) * QUADS + stage_r / 4u][stage_r % 4u] = av[i];
        }
        if (B_NK) {
            let bv = load_k4(false, b_base, col0 + stage_r, p.n, k0 + stage_k);
            for (var i = 0u; i < 4u; i++) {
                b_tile[(stage_k + i) * QUADS + stage_r / 4u][stage_r % 4u] = bv[i];
            }
        } else {
            // [K, N]: invocation loads four consecutive columns of row k0 + flat / 32.
            let kk = flat / QUADS;
            let cq = flat % QUADS;
            var v = vec4<f32>();
            let gk = k0 + kk;
            if (gk < p.k) {
                for (var i = 0u; i < 4u; i++) {
                    let gn = col0 + cq * 4u + i;
                    if (gn < p.n) {
                        v[i] = f32(b[b_base + gk * p.n + gn]);
                    }
                }
            }
            b_tile[kk * QUADS + cq] = v;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let a_lo = a_tile[kk * QUADS + lid.y];
            let a_hi = a_tile[kk * QUADS + HALF + lid.y];
            let b_lo = b_tile[kk * QUADS + lid.x];
            let b_hi = b_tile[kk * QUADS + HALF + lid.x];
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
    store4(r + 0u, cl, c_base, l0);
    store4(r + 0u, cl + 64u, c_base, h0);
    store4(r + 1u, cl, c_base, l1);
    store4(r + 1u, cl + 64u, c_base, h1);
    store4(r + 2u, cl, c_base, l2);
    store4(r + 2u, cl + 64u, c_base, h2);
    store4(r + 3u, cl, c_base, l3);
    store4(r + 3u, cl + 64u, c_base, h3);
    store4(r + 64u, cl, c_base, l4);
    store4(r + 64u, cl + 64u, c_base, h4);
    store4(r + 65u, cl, c_base, l5);
    store4(r + 65u, cl + 64u, c_base, h5);
    store4(r + 66u, cl, c_base, l6);
    store4(r + 66u, cl + 64u, c_base, h6);
    store4(r + 67u, cl, c_base, l7);
    store4(r + 67u, cl + 64u, c_base, h7);
}

// Writes four consecutive columns of one row of c, masked at the edges.
fn store4(row: u32, col: u32, c_base: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let cj = col + j;
        if (cj >= p.n) { return; }
        var out = v[j];
        if (p.has_bias != 0u) {
            out += f32(bias[cj]);
        }
        let i = c_base + row * p.n + cj;
        c[i] = elem(epilogue(out, i));
    }
}
