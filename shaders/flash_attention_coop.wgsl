// Flash attention forward (prefill) on cooperative matrices (tensor cores): the operation,
// layouts, masks and grid of shaders/flash_attention.wgsl (out = softmax(q·kᵀ·scale + mask)·v,
// grouped-query heads, chunked prefill from step.position), with f16 q, k, v and f32
// accumulation (`elem` = f16), on the adapter's F × F fragments (COOP_F, prepended by the host).
// Tiling: a workgroup of NSG subgroups owns BQ = NSG·F query rows of one head (grid x = query
// blocks, y = heads, z = batch); subgroup s owns rows s·F .. s·F + F. The q block is staged
// once in workgroup memory (f16, zero past q_len). The keys are walked in blocks of F: the k
// and v blocks are staged (zero past the last visible key), each subgroup computes its F × F
// scores S = q·kᵀ as HEAD_DIM / F fragment products, stores them to workgroup memory, and its
// lanes run the online softmax row by row in f32 (scale, mask, running max and sum), writing
// the weights P as f16 and each row's rescale factor. The output O (F × HEAD_DIM per subgroup,
// f32) lives in workgroup memory: it is rescaled row by row, then O += P·v one F-column
// fragment at a time. At the end O is divided by the row sums and written once.
// The host picks NSG so that the tiles fit the adapter's workgroup memory; HEAD_DIM is a
// multiple of F. Every coopLoad/coopStore index and stride is a `let` (see DESIGN.md).
enable wgpu_cooperative_matrix;

// struct Params: shaders/lib/flash_params.wgsl.

// struct Step: shaders/lib/step.wgsl.

override HEAD_DIM: u32 = 64u;
override NSG: u32 = 4u;
override WG: u32 = 32u;
const LOWEST: f32 = -3.4028234663852886e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem>;
@group(0) @binding(2) var<storage, read> k: array<elem>;
@group(0) @binding(3) var<storage, read> v: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;
@group(0) @binding(15) var<uniform> step: Step;

// [BQ][HEAD_DIM] queries; [F][HEAD_DIM] keys and values; per subgroup an F × F block of
// scores (f32) and weights (f16) and the F × HEAD_DIM output; per row the softmax state.
var<workgroup> q_s: array<f16, NSG * COOP_F * HEAD_DIM>;
var<workgroup> k_s: array<f16, COOP_F * HEAD_DIM>;
var<workgroup> v_s: array<f16, COOP_F * HEAD_DIM>;
var<workgroup> s_s: array<f32, NSG * COOP_F * COOP_F>;
var<workgroup> p_s: array<f16, NSG * COOP_F * COOP_F>;
var<workgroup> o_s: array<f32, NSG * COOP_F * HEAD_DIM>;
var<workgroup> row_max: array<f32, NSG * COOP_F>;
var<workgroup> row_sum: array<f32, NSG * COOP_F>;
var<workgroup> row_rescale: array<f32, NSG * COOP_F>;

@compute @workgroup_size(WG)
fn flash_attention_coop(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(local_invocation_index) flat: u32,
                        @builtin(subgroup_id) sg: u32,
                        @builtin(subgroup_invocation_id) lane: u32,
                        @builtin(subgroup_size) lanes: u32) {
    let f = COOP_F;
    let bq = NSG * f;
    let q0 = wg.x * bq;
    let head = wg.y;
    let batch = wg.z;
    let kv_head = head / (p.n_heads / p.n_kv_heads);
    let past = step.position;
    let kv_len = past + p.q_len;
    let d_len = HEAD_DIM;

    for (var e = flat; e < bq * HEAD_DIM; e += WG) {
        let r = e / HEAD_DIM;
        var value = f16(0.0);
        if (q0 + r < p.q_len) {
            value = f16(q[((batch * p.q_len + q0 + r) * p.n_heads + head) * HEAD_DIM + e % HEAD_DIM]);
        }
        q_s[e] = value;
    }
    for (var e = flat; e < bq * HEAD_DIM; e += WG) {
        o_s[e] = 0.0;
    }
    if (flat < bq) {
        row_max[flat] = LOWEST;
        row_sum[flat] = 0.0;
    }
    // Keys past the last query of this block are masked for every row under `causal`.
    var end = kv_len;
    if (p.causal != 0u) {
        end = min(kv_len, past + min(q0 + bq, p.q_len));
    }
    workgroupBarrier();

    let q_frag = sg * f * HEAD_DIM;
    let s_frag = sg * f * f;
    for (var k0 = 0u; k0 < end; k0 += f) {
        for (var e = flat; e < f * HEAD_DIM; e += WG) {
            let key = k0 + e / HEAD_DIM;
            var kv = f16(0.0);
            var vv = f16(0.0);
            if (key < end) {
                let i = ((batch * p.kv_capacity + key) * p.n_kv_heads + kv_head) * HEAD_DIM + e % HEAD_DIM;
                kv = f16(k[i]);
                vv = f16(v[i]);
            }
            k_s[e] = kv;
            v_s[e] = vv;
        }
        workgroupBarrier();

        // S = q·kᵀ: kᵀ's column j is key j's row of k_s, so k_s read column-major is kᵀ.
        var s = coop_c();
        for (var d0 = 0u; d0 < HEAD_DIM; d0 += f) {
            let qa = q_frag + d0;
            let fq = coopLoadT<coop_a>(&q_s[qa], d_len);
            let fk = coopLoad<coop_b>(&k_s[d0], d_len);
            s = coopMultiplyAdd(fq, fk, s);
        }
        let sf = f;
        coopStoreT(s, &s_s[s_frag], sf);
        workgroupBarrier();

        // Online softmax, one lane per row of this subgroup; masked scores get weight 0.
        for (var r = lane; r < f; r += lanes) {
            let row = sg * f + r;
            let last_key = past + q0 + row;
            let m_old = row_max[row];
            var m = m_old;
            for (var j = 0u; j < f; j++) {
                let key = k0 + j;
                if (key < end && (p.causal == 0u || key <= last_key) && in_window(key, last_key)) {
                    m = max(m, capped(s_s[s_frag + r * f + j] * p.scale));
                }
            }
            var sum = 0.0;
            for (var j = 0u; j < f; j++) {
                let key = k0 + j;
                var w = 0.0;
                if (key < end && (p.causal == 0u || key <= last_key) && in_window(key, last_key)) {
                    w = exp(capped(s_s[s_frag + r * f + j] * p.scale) - m);
                }
                p_s[s_frag + r * f + j] = f16(w);
                sum += w;
            }
            let rescale = exp(m_old - m);
            row_rescale[row] = rescale;
            row_max[row] = m;
            row_sum[row] = row_sum[row] * rescale + sum;
        }
        workgroupBarrier();

        for (var e = lane; e < f * HEAD_DIM; e += lanes) {
            o_s[q_frag + e] *= row_rescale[sg * f + e / HEAD_DIM];
        }
        workgroupBarrier();

        // O += P·v, one F-column fragment of O at a time.
        let fp = coopLoadT<coop_a>(&p_s[s_frag], sf);
        for (var d0 = 0u; d0 < HEAD_DIM; d0 += f) {
            let oi = q_frag + d0;
            var o = coopLoadT<coop_c>(&o_s[oi], d_len);
            let fv = coopLoadT<coop_b>(&v_s[d0], d_len);
            o = coopMultiplyAdd(fp, fv, o);
            coopStoreT(o, &o_s[oi], d_len);
        }
        workgroupBarrier();
    }

    for (var e = flat; e < bq * HEAD_DIM; e += WG) {
        let r = e / HEAD_DIM;
        if (q0 + r < p.q_len) {
            out[((batch * p.q_len + q0 + r) * p.n_heads + head) * HEAD_DIM + e % HEAD_DIM] = elem(o_s[e] / row_sum[r]);
        }
    }
}
