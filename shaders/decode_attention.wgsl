// Decode attention (flash-decoding): one query token per sequence against a KV cache,
//   out = softmax(q·kᵀ·scale)·v over keys 0 .. kv_len, kv_len = step.position + 1,
// with the keys split across workgroups so that a long cache keeps the whole GPU busy.
//   q, out: [batch, 1, n_heads, HEAD_DIM]
//   k, v:   [batch, kv_capacity, n_kv_heads, HEAD_DIM]; query head h reads kv head
//           h / (n_heads / n_kv_heads)
//   partial_o:  [batch, n_heads, n_splits, HEAD_DIM] f32, partial_ml: [.., n_splits, 2] f32
// Tiling, decode_partial: a workgroup owns WG consecutive keys (one split) of one head
//   (grid x = splits, y = heads, z = batch; the grid covers the largest kv_len the call will
//   see, and a split past kv_len reports no keys). Each invocation scores one key against the
//   query staged in workgroup memory; a tree reduction gives the split's max m and the sum
//   l of exp(score - m); then each invocation accumulates output dimensions d, d + WG, ...
//   over the split's keys, reading v rows contiguously across invocations. The unnormalised
//   output and (m, l) go to the partial buffers.
// Tiling, decode_combine: a workgroup per (head, batch) (grid x = heads, y = batch) rescales
//   every split to the global max, sums, divides by the total weight and writes out.

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    kv_capacity: u32,
    n_splits: u32,
    scale: f32,
    // Gemma 2's attention-logit cap c (0 = none): a logit s becomes c·tanh(s / c).
    softcap: f32,
    // A sliding window of this many positions (0 = none): the query at position q sees keys
    // q - window + 1 ..= q.
    window: u32,
    _pad0: u32,
}

// struct Step: shaders/lib/step.wgsl.

override HEAD_DIM: u32 = 64u;
// Keys per split and invocations per workgroup; a power of two (tree reductions).
override WG: u32 = 256u;
const LOWEST: f32 = -3.4028234663852886e38;

// capped(s): shaders/lib/softcap.wgsl; workgroup_sum, workgroup_max:
// shaders/lib/workgroup_sum.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem>;
@group(0) @binding(2) var<storage, read> k: array<elem>;
@group(0) @binding(3) var<storage, read> v: array<elem>;
@group(0) @binding(4) var<storage, read_write> partial_o: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial_ml: array<f32>;
@group(0) @binding(6) var<storage, read> combine_o: array<f32>;
@group(0) @binding(7) var<storage, read> combine_ml: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<elem>;
@group(0) @binding(15) var<uniform> step: Step;

var<workgroup> q_row: array<f32, HEAD_DIM>;
var<workgroup> weights: array<f32, WG>;

@compute @workgroup_size(WG)
fn decode_partial(@builtin(workgroup_id) wg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let split = wg.x;
    let head = wg.y;
    let batch = wg.z;
    let kv_head = head / (p.n_heads / p.n_kv_heads);
    let kv_len = step.position + 1u;
    let first = split * WG;
    // Splits past the cache's current length have no keys (count 0): they report m = LOWEST
    // and l = 0, which the combine step weighs by zero.
    let count = min(WG, max(kv_len, first) - first);

    for (var d = lid; d < HEAD_DIM; d += WG) {
        q_row[d] = f32(q[(batch * p.n_heads + head) * HEAD_DIM + d]) * p.scale;
    }
    workgroupBarrier();

    // Keys in this split, and within the sliding window of the query (at kv_len - 1).
    let visible = lid < count && (p.window == 0u || first + lid + p.window > step.position);
    var score = LOWEST;
    if (visible) {
        let row = ((batch * p.kv_capacity + first + lid) * p.n_kv_heads + kv_head) * HEAD_DIM;
        var s = 0.0;
        for (var d = 0u; d < HEAD_DIM; d++) {
            s = fma(q_row[d], f32(k[row + d]), s);
        }
        score = capped(s);
    }
    let m = workgroup_max(score, lid);
    var w = 0.0;
    if (visible) {
        w = exp(score - m);
    }
    weights[lid] = w;
    let l = workgroup_sum(w, lid);

    let slot = (batch * p.n_heads + head) * p.n_splits + split;
    for (var d = lid; d < HEAD_DIM; d += WG) {
        var o = 0.0;
        for (var j = 0u; j < count; j++) {
            let i = ((batch * p.kv_capacity + first + j) * p.n_kv_heads + kv_head) * HEAD_DIM + d;
            o = fma(weights[j], f32(v[i]), o);
        }
        partial_o[slot * HEAD_DIM + d] = o;
    }
    if (lid == 0u) {
        partial_ml[slot * 2u] = m;
        partial_ml[slot * 2u + 1u] = l;
    }
}

@compute @workgroup_size(WG)
fn decode_combine(@builtin(workgroup_id) wg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let head = wg.x;
    let batch = wg.y;
    let first_slot = (batch * p.n_heads + head) * p.n_splits;
    var m = LOWEST;
    for (var s = 0u; s < p.n_splits; s++) {
        m = max(m, combine_ml[(first_slot + s) * 2u]);
    }
    var total = 0.0;
    for (var s = 0u; s < p.n_splits; s++) {
        let slot = first_slot + s;
        total += combine_ml[slot * 2u + 1u] * exp(combine_ml[slot * 2u] - m);
    }
    for (var d = lid; d < HEAD_DIM; d += WG) {
        var o = 0.0;
        for (var s = 0u; s < p.n_splits; s++) {
            let slot = first_slot + s;
            o += combine_o[slot * HEAD_DIM + d] * exp(combine_ml[slot * 2u] - m);
        }
        out[(batch * p.n_heads + head) * HEAD_DIM + d] = elem(o / total);
    }
}
