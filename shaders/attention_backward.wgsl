// The recomputing backward of attention (FlashAttention-2's, without its tiling into
// workgroup-sized blocks): the score matrix is never stored; each pass recomputes the scores
// it needs from q, k and the forward's row statistics.
//   Forward: s_ij = scale · q_i · k_j over the keys j query i sees (causal: key position
//   ≤ past + i), P = softmax_j(s), O = P · V.
//   attention_backward_q, one workgroup per (query i, head h, batch b): L_i = logsumexp_j s_ij
//     (online, over key tiles), D_i = dO_i · O_i, then dQ_i = scale · Σ_j dS_ij k_j with
//     dS_ij = P_ij (dO_i · v_j - D_i); L and D go to `stats` ([batch, heads, q_len, 2] f32).
//   attention_backward_kv, one workgroup per (key j, kv head, batch b): over every query of
//     the heads sharing that kv head that sees key j, dK_j = scale · Σ_i dS_ij q_i and
//     dV_j = Σ_i P_ij dO_i, recomputing s_ij and using L_i, D_i from `stats`. Each key's
//     gradient is summed by one workgroup in a fixed order: no atomics, same bits every run.
//   q, dq, dout, out: [batch, q_len, n_heads, HEAD_DIM]; k, v, dk, dv: [batch, kv_len,
//   n_kv_heads, HEAD_DIM]; query head h reads kv head h / (n_heads / n_kv_heads).
// Tiling: WG invocations take a tile of WG keys (or queries) at a time, one each, and share
// their weights through workgroup memory; each invocation then owns output dimensions lid,
// lid + WG, ... (at most OUT_PER_LANE of them).

struct Params {
    q_len: u32,
    kv_len: u32,
    n_heads: u32,
    n_kv_heads: u32,
    causal: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

override HEAD_DIM: u32 = 64u;
override WG: u32 = 64u;
const OUT_PER_LANE: u32 = 4u;
const LOWEST: f32 = -3.4028234663852886e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem>;
@group(0) @binding(2) var<storage, read> k: array<elem>;
@group(0) @binding(3) var<storage, read> v: array<elem>;
@group(0) @binding(4) var<storage, read> out: array<elem>;
@group(0) @binding(5) var<storage, read> dout: array<elem>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<elem>;
@group(0) @binding(8) var<storage, read> stats_in: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<elem>;
@group(0) @binding(10) var<storage, read_write> dv: array<elem>;

// workgroup_sum, workgroup_max: shaders/lib/workgroup_sum.wgsl.

var<workgroup> row_a: array<f32, HEAD_DIM>;
var<workgroup> row_b: array<f32, HEAD_DIM>;
var<workgroup> tile_w: array<f32, WG>;
var<workgroup> tile_u: array<f32, WG>;
var<workgroup> tile_at: array<u32, WG>;

fn q_index(b: u32, i: u32, h: u32) -> u32 {
    return ((b * p.q_len + i) * p.n_heads + h) * HEAD_DIM;
}

fn kv_index(b: u32, j: u32, h: u32) -> u32 {
    return ((b * p.kv_len + j) * p.n_kv_heads + h) * HEAD_DIM;
}

// Keys query i sees: 0 .. visible_keys(i).
fn visible_keys(i: u32) -> u32 {
    if (p.causal != 0u) {
        return min(p.kv_len, p.kv_len - p.q_len + i + 1u);
    }
    return p.kv_len;
}

@compute @workgroup_size(WG)
fn attention_backward_q(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = wg.x;
    let h = wg.y;
    let b = wg.z;
    let hk = h / (p.n_heads / p.n_kv_heads);
    let qi = q_index(b, i, h);
    // row_a: q_i · scale; row_b: dO_i.
    var d_part = 0.0;
    for (var d = lid; d < HEAD_DIM; d += WG) {
        row_a[d] = f32(q[qi + d]) * p.scale;
        let g = f32(dout[qi + d]);
        row_b[d] = g;
        d_part += g * f32(out[qi + d]);
    }
    let delta = workgroup_sum(d_part, lid);
    let keys = visible_keys(i);

    // Pass 1: L_i.
    var m = LOWEST;
    var l = 0.0;
    for (var t = 0u; t < keys; t += WG) {
        let j = t + lid;
        var s = LOWEST;
        if (j < keys) {
            let kj = kv_index(b, j, hk);
            s = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                s = fma(row_a[d], f32(k[kj + d]), s);
            }
        }
        let m_new = max(m, workgroup_max(s, lid));
        var e = 0.0;
        if (j < keys) {
            e = exp(s - m_new);
        }
        l = l * exp(m - m_new) + workgroup_sum(e, lid);
        m = m_new;
    }
    let lse = m + log(l);

    // Pass 2: dQ_i.
    var acc = array<f32, OUT_PER_LANE>(0.0, 0.0, 0.0, 0.0);
    for (var t = 0u; t < keys; t += WG) {
        let j = t + lid;
        var ds = 0.0;
        if (j < keys) {
            let kj = kv_index(b, j, hk);
            var s = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                s = fma(row_a[d], f32(k[kj + d]), s);
                dp = fma(row_b[d], f32(v[kj + d]), dp);
            }
            ds = exp(s - lse) * (dp - delta);
        }
        tile_w[lid] = ds;
        workgroupBarrier();
        let count = min(WG, keys - t);
        for (var c = 0u; c < OUT_PER_LANE; c++) {
            let d = lid + c * WG;
            if (d < HEAD_DIM) {
                var a = acc[c];
                for (var u = 0u; u < count; u++) {
                    a = fma(tile_w[u], f32(k[kv_index(b, t + u, hk) + d]), a);
                }
                acc[c] = a;
            }
        }
        workgroupBarrier();
    }
    for (var c = 0u; c < OUT_PER_LANE; c++) {
        let d = lid + c * WG;
        if (d < HEAD_DIM) {
            dq[qi + d] = elem(acc[c] * p.scale);
        }
    }
    if (lid == 0u) {
        let at = ((b * p.n_heads + h) * p.q_len + i) * 2u;
        stats[at] = lse;
        stats[at + 1u] = delta;
    }
}

@compute @workgroup_size(WG)
fn attention_backward_kv(@builtin(workgroup_id) wg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let j = wg.x;
    let hk = wg.y;
    let b = wg.z;
    let group = p.n_heads / p.n_kv_heads;
    let kj = kv_index(b, j, hk);
    // row_a: k_j; row_b: v_j.
    for (var d = lid; d < HEAD_DIM; d += WG) {
        row_a[d] = f32(k[kj + d]);
        row_b[d] = f32(v[kj + d]);
    }
    workgroupBarrier();
    // Queries that see key j: from the first whose visible keys include j.
    var first = 0u;
    if (p.causal != 0u && j + p.q_len > p.kv_len) {
        first = j + p.q_len - p.kv_len;
    }
    var dk_acc = array<f32, OUT_PER_LANE>(0.0, 0.0, 0.0, 0.0);
    var dv_acc = array<f32, OUT_PER_LANE>(0.0, 0.0, 0.0, 0.0);
    // Every (head of the group, query) pair, in tiles of WG.
    let per_head = p.q_len - min(first, p.q_len);
    let pairs = group * per_head;
    for (var t = 0u; t < pairs; t += WG) {
        let pair = t + lid;
        var pw = 0.0;
        var ds = 0.0;
        var at = 0u;
        if (pair < pairs) {
            let h = hk * group + pair / per_head;
            let i = first + pair % per_head;
            at = q_index(b, i, h);
            let st = ((b * p.n_heads + h) * p.q_len + i) * 2u;
            var s = 0.0;
            var dp = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                s = fma(f32(q[at + d]), row_a[d], s);
                dp = fma(f32(dout[at + d]), row_b[d], dp);
            }
            pw = exp(s * p.scale - stats_in[st]);
            ds = pw * (dp - stats_in[st + 1u]);
        }
        tile_w[lid] = pw;
        tile_u[lid] = ds;
        tile_at[lid] = at;
        workgroupBarrier();
        let count = min(WG, pairs - t);
        for (var c = 0u; c < OUT_PER_LANE; c++) {
            let d = lid + c * WG;
            if (d < HEAD_DIM) {
                var a = dk_acc[c];
                var e = dv_acc[c];
                for (var u = 0u; u < count; u++) {
                    let row = tile_at[u];
                    a = fma(tile_u[u], f32(q[row + d]), a);
                    e = fma(tile_w[u], f32(dout[row + d]), e);
                }
                dk_acc[c] = a;
                dv_acc[c] = e;
            }
        }
        workgroupBarrier();
    }
    for (var c = 0u; c < OUT_PER_LANE; c++) {
        let d = lid + c * WG;
        if (d < HEAD_DIM) {
            dk[kj + d] = elem(dk_acc[c] * p.scale);
            dv[kj + d] = elem(dv_acc[c]);
        }
    }
}
