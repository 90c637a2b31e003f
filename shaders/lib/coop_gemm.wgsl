// Shared by shaders/matmul_coop.wgsl and conv2d_coop.wgsl (appended by the host, after the
// coop_a / coop_b / coop_c aliases and COOP_F that PipelineKey::coop_fragment prepends):
// one workgroup's TILE × TILE block of a GEMM C = A·B on cooperative matrices, f16 operands,
// f32 accumulation, for any fragment size F the adapter lists (8 on lavapipe, 16 on GPUs).
// Tiling: eight subgroups (the including shader's workgroup is 8 × the subgroup size) own
// TILE = 8F rows × 8F columns and walk K in steps of 2F. Each step stages the TILE × 2F
// A block and the 2F × TILE B block in workgroup memory through the includer's
// load_a(row, k) and load_b(k, col), which return 0 outside the matrix (so any M, N, K
// works); subgroup s then multiplies its 2F × 4F part (rows 2F·(s / 2), columns 4F·(s % 2))
// as 2 × 4 fragments, keeping eight f32 accumulators in cooperative matrices across the
// whole K loop. Each accumulator leaves through the subgroup's F × F staging area in
// workgroup memory, from which store_c(row, col, v) adds bias and epilogue and masks edges.
// The includer also says in b_along_k() whether B's memory is contiguous along k, so the
// staging reads walk it in that order.
// Every coopLoad/coopStore index and stride is a `let` first: naga 30's SPIR-V writer
// panics on inline expressions there (see DESIGN.md).

const TILE: u32 = 8u * COOP_F;
const STEP_K: u32 = 2u * COOP_F;

// A as [TILE][STEP_K] and B as [STEP_K][TILE], row-major, whatever their layout in memory.
var<workgroup> a_s: array<f16, TILE * STEP_K>;
var<workgroup> b_s: array<f16, STEP_K * TILE>;
// One F × F f32 fragment per subgroup on its way out.
var<workgroup> c_s: array<f32, 8u * COOP_F * COOP_F>;

fn coop_gemm(row0: u32, col0: u32, k_len: u32, flat: u32, sg: u32, lane: u32, lanes: u32) {
    let f = COOP_F;
    let wm = (sg / 2u) * 2u * f;
    let wn = (sg % 2u) * 4u * f;
    let threads = 8u * lanes;
    let sk = STEP_K;
    let st = TILE;

    var acc00 = coop_c();
    var acc01 = coop_c();
    var acc02 = coop_c();
    var acc03 = coop_c();
    var acc10 = coop_c();
    var acc11 = coop_c();
    var acc12 = coop_c();
    var acc13 = coop_c();

    for (var k0 = 0u; k0 < k_len; k0 += STEP_K) {
        for (var e = flat; e < TILE * STEP_K; e += threads) {
            a_s[e] = load_a(row0 + e / STEP_K, k0 + e % STEP_K);
        }
        if (b_along_k()) {
            for (var e = flat; e < STEP_K * TILE; e += threads) {
                let kk = e % STEP_K;
                let c = e / STEP_K;
                b_s[kk * TILE + c] = load_b(k0 + kk, col0 + c);
            }
        } else {
            for (var e = flat; e < STEP_K * TILE; e += threads) {
                b_s[e] = load_b(k0 + e / TILE, col0 + e % TILE);
            }
        }
        workgroupBarrier();

        for (var ks = 0u; ks < STEP_K; ks += COOP_F) {
            let ia0 = wm * sk + ks;
            let ia1 = (wm + f) * sk + ks;
            let fa0 = coopLoadT<coop_a>(&a_s[ia0], sk);
            let fa1 = coopLoadT<coop_a>(&a_s[ia1], sk);
            let ib0 = ks * st + wn;
            let fb0 = coopLoadT<coop_b>(&b_s[ib0], st);
            let ib1 = ib0 + f;
            let fb1 = coopLoadT<coop_b>(&b_s[ib1], st);
            let ib2 = ib0 + 2u * f;
            let fb2 = coopLoadT<coop_b>(&b_s[ib2], st);
            let ib3 = ib0 + 3u * f;
            let fb3 = coopLoadT<coop_b>(&b_s[ib3], st);
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

    let r0 = row0 + wm;
    let r1 = r0 + f;
    let c0 = col0 + wn;
    store_fragment(acc00, sg, lane, lanes, r0, c0);
    store_fragment(acc01, sg, lane, lanes, r0, c0 + f);
    store_fragment(acc02, sg, lane, lanes, r0, c0 + 2u * f);
    store_fragment(acc03, sg, lane, lanes, r0, c0 + 3u * f);
    store_fragment(acc10, sg, lane, lanes, r1, c0);
    store_fragment(acc11, sg, lane, lanes, r1, c0 + f);
    store_fragment(acc12, sg, lane, lanes, r1, c0 + 2u * f);
    store_fragment(acc13, sg, lane, lanes, r1, c0 + 3u * f);
}

// Hands one accumulator fragment, whose top-left element is C[row][col], to store_c.
fn store_fragment(acc: coop_c, sg: u32, lane: u32, lanes: u32, row: u32, col: u32) {
    let staging = sg * COOP_F * COOP_F;
    let sf = COOP_F;
    coopStoreT(acc, &c_s[staging], sf);
    workgroupBarrier();
    for (var i = lane; i < COOP_F * COOP_F; i += lanes) {
        store_c(row + i / COOP_F, col + i % COOP_F, c_s[staging + i]);
    }
    workgroupBarrier();
}
