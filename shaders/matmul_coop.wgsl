// Matmul on cooperative matrices (tensor cores): c[b] = a[b] · B[b] (+ bias), then the
// optional fused epilogue of shaders/matmul.wgsl, with f16 inputs and f32 accumulation
// (`elem` = f16). Same operands and parameters as shaders/matmul.wgsl:
//   a: [batch, M, K] row-major; B: [batch, K, N] (B_NK = false) or [batch, N, K] (B_NK = true);
//   bias: [N]; c: [batch, M, N]; a batch stride of 0 shares an operand across the batch.
// Tiling: a workgroup of eight subgroups (WG = 8 × the adapter's fixed subgroup size) owns a
// 128 × 128 tile of c (grid x = column tiles, y = row tiles, z = batch) and walks K in steps
// of 32. Each step stages the 128 × 32 A tile and the 32 × 128 B tile in workgroup memory
// (zero past the matrix edges, so any M, N, K works), then subgroup s multiplies its 32 × 64
// quarter-half (rows 32·(s / 2), columns 64·(s % 2)) as 2 × 4 blocks of 16 × 16, keeping the
// eight f32 accumulators in cooperative matrices across the whole K loop. At the end each
// block goes through a per-subgroup 16 × 16 staging area in workgroup memory so the store
// can add the bias and mask the edges.
// Every coopLoad/coopStore index is a `let` first: naga 30's SPIR-V writer panics on inline
// index expressions there (see DESIGN.md).
enable wgpu_cooperative_matrix;

// struct Params: shaders/lib/matmul_params.wgsl.

alias CA = coop_mat16x16<f16, A>;
alias CB = coop_mat16x16<f16, B>;
alias CC = coop_mat16x16<f32, C>;

const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 32u;
override WG: u32 = 256u;
override B_NK: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> c: array<elem>;
@group(0) @binding(5) var<storage, read> other: array<elem>;

// A as [BM][BK], B as [BK][BN] whatever its layout in memory (a [N, K] B is transposed as
// it is staged: the global reads stay contiguous along k).
// epilogue(v, i): shaders/lib/epilogue.wgsl.

var<workgroup> a_s: array<f16, 4096>;
var<workgroup> b_s: array<f16, 4096>;
// One 16 × 16 f32 block per subgroup on its way out.
var<workgroup> c_s: array<f32, 2048>;

// Writes the block at (row, col) of the tile from subgroup `sg`'s staging area, masked.
fn store_block(sg: u32, lane: u32, lanes: u32, row: u32, col: u32, c_base: u32) {
    for (var i = lane; i < 256u; i += lanes) {
        let gr = row + i / 16u;
        let gc = col + i % 16u;
        if (gr < p.m && gc < p.n) {
            var v = c_s[sg * 256u + i];
            if (p.has_bias != 0u) {
                v += f32(bias[gc]);
            }
            let o = c_base + gr * p.n + gc;
            c[o] = elem(epilogue(v, o));
        }
    }
}

@compute @workgroup_size(WG)
fn matmul_coop(@builtin(workgroup_id) wg: vec3<u32>,
               @builtin(local_invocation_index) flat: u32,
               @builtin(subgroup_id) sg: u32,
               @builtin(subgroup_invocation_id) lane: u32,
               @builtin(subgroup_size) lanes: u32) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let a_base = wg.z * p.batch_stride_a;
    let b_base = wg.z * p.batch_stride_b;
    let c_base = wg.z * p.batch_stride_c;
    let wm = (sg / 2u) * 32u;
    let wn = (sg % 2u) * 64u;
    let bk = BK;
    let bn = BN;

    var acc00 = CC();
    var acc01 = CC();
    var acc02 = CC();
    var acc03 = CC();
    var acc10 = CC();
    var acc11 = CC();
    var acc12 = CC();
    var acc13 = CC();

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var e = flat; e < BM * BK; e += WG) {
            let r = row0 + e / BK;
            let kk = k0 + e % BK;
            var v = f16(0.0);
            if (r < p.m && kk < p.k) {
                v = f16(a[a_base + r * p.k + kk]);
            }
            a_s[e] = v;
        }
        if (B_NK) {
            for (var e = flat; e < BN * BK; e += WG) {
                let n = col0 + e / BK;
                let kk = k0 + e % BK;
                var v = f16(0.0);
                if (n < p.n && kk < p.k) {
                    v = f16(b[b_base + n * p.k + kk]);
                }
                b_s[(e % BK) * BN + e / BK] = v;
            }
        } else {
            for (var e = flat; e < BN * BK; e += WG) {
                let kk = k0 + e / BN;
                let n = col0 + e % BN;
                var v = f16(0.0);
                if (n < p.n && kk < p.k) {
                    v = f16(b[b_base + kk * p.n + n]);
                }
                b_s[e] = v;
            }
        }
        workgroupBarrier();

        for (var ks = 0u; ks < BK; ks += 16u) {
            let ia0 = wm * BK + ks;
            let ia1 = (wm + 16u) * BK + ks;
            let fa0 = coopLoadT<CA>(&a_s[ia0], bk);
            let fa1 = coopLoadT<CA>(&a_s[ia1], bk);
            let ib0 = ks * BN + wn + 0u;
            let fb0 = coopLoadT<CB>(&b_s[ib0], bn);
            let ib1 = ks * BN + wn + 16u;
            let fb1 = coopLoadT<CB>(&b_s[ib1], bn);
            let ib2 = ks * BN + wn + 32u;
            let fb2 = coopLoadT<CB>(&b_s[ib2], bn);
            let ib3 = ks * BN + wn + 48u;
            let fb3 = coopLoadT<CB>(&b_s[ib3], bn);
            acc00 = coopMultiplyAdd(fa0, fb0, acc00);
            acc01 = coopMultiplyAdd(fa0, fb1, acc01);
            acc02 = coopMultiplyAdd(fa0, fb2, acc02);
            acc03 = coopMultiplyAdd(fa0, fb3, acc03);
            acc10 = coopMultiplyAdd(fa1, fb0, acc10);
            acc11 = coopMultiplyAdd(fa1, fb1, acc11);
            acc12 = coopMultiplyAdd(fa1, fb2, acc12);
            acc13 = coopMultiplyAdd(fa1, fb3, acc13);
        }
        workgroupBarrier();
    }

    let staging = sg * 256u;
    let s16 = 16u;
    coopStoreT(acc00, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 0u, col0 + wn + 0u, c_base);
    workgroupBarrier();
    coopStoreT(acc01, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 0u, col0 + wn + 16u, c_base);
    workgroupBarrier();
    coopStoreT(acc02, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 0u, col0 + wn + 32u, c_base);
    workgroupBarrier();
    coopStoreT(acc03, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 0u, col0 + wn + 48u, c_base);
    workgroupBarrier();
    coopStoreT(acc10, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 16u, col0 + wn + 0u, c_base);
    workgroupBarrier();
    coopStoreT(acc11, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 16u, col0 + wn + 16u, c_base);
    workgroupBarrier();
    coopStoreT(acc12, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 16u, col0 + wn + 32u, c_base);
    workgroupBarrier();
    coopStoreT(acc13, &c_s[staging], s16);
    workgroupBarrier();
    store_block(sg, lane, lanes, row0 + wm + 16u, col0 + wn + 48u, c_base);
    workgroupBarrier();
}
