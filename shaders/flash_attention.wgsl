// Flash attention forward (prefill): out = softmax(q·kᵀ·scale + mask)·v without materialising
// the score matrix.
//   q:    [batch, q_len, n_heads, HEAD_DIM]
//   k, v: [batch, kv_capacity, n_kv_heads, HEAD_DIM]; positions 0 .. kv_len are used, where
//         kv_len = step.position + q_len (the queries are the tokens at step.position ..)
//   out:  [batch, q_len, n_heads, HEAD_DIM]
// Query head h reads kv head h / (n_heads / n_kv_heads) (grouped-query and multi-query
// attention without duplicating k and v). The queries are the last q_len of the kv_len
// positions, so with `causal` query i sees keys 0 ..= kv_len - q_len + i (chunked prefill).
// Tiling: a workgroup owns BQ query rows of one head (grid x = query blocks, y = heads,
// z = batch). It walks the keys in blocks of BK: the k block is staged in workgroup memory
// and the BQ × BK scores computed from it and the staged (pre-scaled) q rows; one invocation
// per row then updates that row's running max and sum (online softmax, f32) and turns the
// scores into weights; the v block replaces the k block, and each invocation rescales and
// accumulates its share of the BQ × HEAD_DIM output, held in registers (at most MAX_OUT
// values each). The output is divided by the row sums and written once. Rows of q and k in
// workgroup memory are padded to HEAD_DIM + 1 floats so that reading across rows does not
// hit one memory bank.

// struct Params: shaders/lib/flash_params.wgsl.

// struct Step: shaders/lib/step.wgsl.

override HEAD_DIM: u32 = 64u;
override BQ: u32 = 32u;
override BK: u32 = 32u;
override WG: u32 = 256u;
// Output values per invocation: the host keeps BQ * HEAD_DIM <= MAX_OUT * WG.
const MAX_OUT: u32 = 8u;
const LOWEST: f32 = -3.4028234663852886e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem>;
@group(0) @binding(2) var<storage, read> k: array<elem>;
@group(0) @binding(3) var<storage, read> v: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;
@group(0) @binding(15) var<uniform> step: Step;

var<workgroup> q_tile: array<f32, BQ * (HEAD_DIM + 1u)>;
var<workgroup> kv_tile: array<f32, BK * (HEAD_DIM + 1u)>;
var<workgroup> s_tile: array<f32, BQ * BK>;
var<workgroup> row_max: array<f32, BQ>;
var<workgroup> row_sum: array<f32, BQ>;
var<workgroup> row_rescale: array<f32, BQ>;

// Stages keys k0 .. k0 + BK of k or v (zero past `end`) into kv_tile.
fn stage_kv(from_v: bool, batch: u32, kv_head: u32, k0: u32, end: u32, lid: u32) {
    let stride = HEAD_DIM + 1u;
    for (var e = lid; e < BK * HEAD_DIM; e += WG) {
        let j = e / HEAD_DIM;
        let d = e % HEAD_DIM;
        let key = k0 + j;
        var value = 0.0;
        if (key < end) {
            let i = ((batch * p.kv_capacity + key) * p.n_kv_heads + kv_head) * HEAD_DIM + d;
            if (from_v) {
                value = f32(v[i]);
            } else {
                value = f32(k[i]);
            }
        }
        kv_tile[j * stride + d] = value;
    }
}

@compute @workgroup_size(WG)
fn flash_attention(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let stride = HEAD_DIM + 1u;
    let q0 = wg.x * BQ;
    let head = wg.y;
    let batch = wg.z;
    let kv_head = head / (p.n_heads / p.n_kv_heads);
    let past = step.position;
    let kv_len = past + p.q_len;

    for (var e = lid; e < BQ * HEAD_DIM; e += WG) {
        let r = e / HEAD_DIM;
        let d = e % HEAD_DIM;
        var value = 0.0;
        if (q0 + r < p.q_len) {
            value = f32(q[((batch * p.q_len + q0 + r) * p.n_heads + head) * HEAD_DIM + d]) * p.scale;
        }
        q_tile[r * stride + d] = value;
    }
    if (lid < BQ) {
        row_max[lid] = LOWEST;
        row_sum[lid] = 0.0;
    }
    // Keys past the last query of this block are masked for every row under `causal`.
    var end = kv_len;
    if (p.causal != 0u) {
        end = min(kv_len, past + min(q0 + BQ, p.q_len));
    }
    var acc: array<f32, MAX_OUT>;
    workgroupBarrier();

    for (var k0 = 0u; k0 < end; k0 += BK) {
        stage_kv(false, batch, kv_head, k0, end, lid);
        workgroupBarrier();

        for (var e = lid; e < BQ * BK; e += WG) {
            let r = e / BK;
            let j = e % BK;
            var s = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                s = fma(q_tile[r * stride + d], kv_tile[j * stride + d], s);
            }
            s_tile[e] = capped(s);
        }
        workgroupBarrier();

        // Online softmax, one invocation per query row; masked scores become weight 0.
        if (lid < BQ) {
            let last_key = past + q0 + lid;
            let m_old = row_max[lid];
            var m = m_old;
            for (var j = 0u; j < BK; j++) {
                let key = k0 + j;
                if (key < end && (p.causal == 0u || key <= last_key) && in_window(key, last_key)) {
                    m = max(m, s_tile[lid * BK + j]);
                }
            }
            var sum = 0.0;
            for (var j = 0u; j < BK; j++) {
                let key = k0 + j;
                var w = 0.0;
                if (key < end && (p.causal == 0u || key <= last_key) && in_window(key, last_key)) {
                    w = exp(s_tile[lid * BK + j] - m);
                }
                s_tile[lid * BK + j] = w;
                sum += w;
            }
            let rescale = exp(m_old - m);
            row_rescale[lid] = rescale;
            row_max[lid] = m;
            row_sum[lid] = row_sum[lid] * rescale + sum;
        }
        // The k block is no longer read once the scores are in s_tile.
        stage_kv(true, batch, kv_head, k0, end, lid);
        workgroupBarrier();

        for (var i = 0u; i < MAX_OUT; i++) {
            let e = lid + i * WG;
            if (e >= BQ * HEAD_DIM) { break; }
            let r = e / HEAD_DIM;
            let d = e % HEAD_DIM;
            var o = acc[i] * row_rescale[r];
            for (var j = 0u; j < BK; j++) {
                o = fma(s_tile[r * BK + j], kv_tile[j * stride + d], o);
            }
            acc[i] = o;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < MAX_OUT; i++) {
        let e = lid + i * WG;
        if (e >= BQ * HEAD_DIM) { break; }
        let r = e / HEAD_DIM;
        let d = e % HEAD_DIM;
        if (q0 + r < p.q_len) {
            out[((batch * p.q_len + q0 + r) * p.n_heads + head) * HEAD_DIM + d] = elem(acc[i] / row_sum[r]);
        }
    }
}
