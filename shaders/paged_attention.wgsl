// Paged attention: query rows of many sequences at once, each against its own keys, which
// live in fixed-size blocks of one shared pool and are found through the sequence's block
// table (decode rows and chunked-prefill rows alike):
//   out[r, h] = softmax_j(capped(q[r, h] · k_j · scale)) · v_j over the row's visible keys
//   q, out:    [rows, n_heads, HEAD_DIM]
//   k, v pool: [pool_rows, n_kv_heads, HEAD_DIM], pool_rows = blocks · block_size; query head
//              h reads kv head h / (n_heads / n_kv_heads)
//   row_info:  [rows, 2] u32: (first, position): the row's block table is table[first ..] and
//              it sees keys 0 ..= position (with a window W: position - W + 1 ..= position)
//   table:     u32 block ids; key j sits at pool row
//              table[first + j / block_size] · block_size + j % block_size
// Tiling: a workgroup per (head, row) (grid x = heads, y = rows). The query is staged in
// workgroup memory; the visible keys go by in tiles of WG, one key per invocation (its pool
// row looked up once and shared), and the tiles merge by the online softmax: a running max m
// and sum l, and each invocation's output dimensions lid, lid + WG, ... (at most OUT_PER_LANE)
// rescaled by exp(m_old - m_new) before a tile's weighted values are added.

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    block_size: u32,
    pool_rows: u32,
    table_len: u32,
    window: u32,
    scale: f32,
    // Gemma 2's attention-logit cap c (0 = none): a logit s becomes c·tanh(s / c).
    softcap: f32,
}

override HEAD_DIM: u32 = 64u;
// Keys per tile and invocations per workgroup; a power of two (tree reductions).
override WG: u32 = 64u;
const OUT_PER_LANE: u32 = 4u;
const LOWEST: f32 = -3.4028234663852886e38;
const NO_ROW: u32 = 0xffffffffu;

// capped(s): shaders/lib/softcap.wgsl; workgroup_sum, workgroup_max:
// shaders/lib/workgroup_sum.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem>;
@group(0) @binding(2) var<storage, read> k: array<elem>;
@group(0) @binding(3) var<storage, read> v: array<elem>;
@group(0) @binding(4) var<storage, read> row_info: array<u32>;
@group(0) @binding(5) var<storage, read> table: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<elem>;

var<workgroup> q_row: array<f32, HEAD_DIM>;
var<workgroup> weights: array<f32, WG>;
var<workgroup> pool_row: array<u32, WG>;

// The pool row of key j of a sequence whose table starts at `first` (NO_ROW when the table
// or the pool would be read past its end).
fn key_row(first: u32, j: u32) -> u32 {
    let entry = first + j / p.block_size;
    if (entry >= p.table_len) {
        return NO_ROW;
    }
    let row = table[entry] * p.block_size + j % p.block_size;
    if (row >= p.pool_rows) {
        return NO_ROW;
    }
    return row;
}

@compute @workgroup_size(WG)
fn paged_attention(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let head = wg.x;
    let r = wg.y;
    let kv_head = head / (p.n_heads / p.n_kv_heads);
    let first = row_info[r * 2u];
    let position = row_info[r * 2u + 1u];
    var start = 0u;
    if (p.window > 0u && position + 1u > p.window) {
        start = position + 1u - p.window;
    }
    let end = position + 1u;

    for (var d = lid; d < HEAD_DIM; d += WG) {
        q_row[d] = f32(q[(r * p.n_heads + head) * HEAD_DIM + d]) * p.scale;
    }
    workgroupBarrier();

    var m = LOWEST;
    var l = 0.0;
    var acc = array<f32, OUT_PER_LANE>(0.0, 0.0, 0.0, 0.0);
    for (var tile = start; tile < end; tile += WG) {
        let j = tile + lid;
        var row = NO_ROW;
        if (j < end) {
            row = key_row(first, j);
        }
        var score = LOWEST;
        if (row != NO_ROW) {
            let base = (row * p.n_kv_heads + kv_head) * HEAD_DIM;
            var s = 0.0;
            for (var d = 0u; d < HEAD_DIM; d++) {
                s = fma(q_row[d], f32(k[base + d]), s);
            }
            score = capped(s);
        }
        pool_row[lid] = row;
        let m_new = max(m, workgroup_max(score, lid));
        let alpha = exp(m - m_new);
        var w = 0.0;
        if (row != NO_ROW) {
            w = exp(score - m_new);
        }
        weights[lid] = w;
        l = l * alpha + workgroup_sum(w, lid);
        m = m_new;
        let count = min(WG, end - tile);
        for (var i = 0u; i < OUT_PER_LANE; i++) {
            let d = lid + i * WG;
            if (d < HEAD_DIM) {
                var o = acc[i] * alpha;
                for (var t = 0u; t < count; t++) {
                    let at = pool_row[t];
                    if (at != NO_ROW) {
                        o = fma(weights[t], f32(v[(at * p.n_kv_heads + kv_head) * HEAD_DIM + d]), o);
                    }
                }
                acc[i] = o;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < OUT_PER_LANE; i++) {
        let d = lid + i * WG;
        if (d < HEAD_DIM) {
            var o = 0.0;
            if (l > 0.0) {
                o = acc[i] / l;
            }
            out[(r * p.n_heads + head) * HEAD_DIM + d] = elem(o);
        }
    }
}
