// Mixture-of-experts feed-forward pieces, three entry points:
//   moe_route:   the router's logits [tokens, E] to each token's top-k experts: softmax over
//                all E (f32), the k largest (ties to the lower expert id), their
//                probabilities renormalised to sum 1 where p.renormalize is 1.
//                ids: [tokens, k] u32; weights: [tokens, k] f32. One invocation per token.
//   moe_gemv:    one GEMV per (token, slot) pair with the pair's expert's weight:
//                y[p, n] = W[ids[p]·N + n, :] · x[p / p.x_div, :], W the experts' [N, K]
//                matrices stacked by rows ([E·N, K]); x_div = k reads a token's row for each
//                of its k pairs, 1 reads the pair's own row. Then · weights[p] where
//                p.weighted is 1, and the epilogue (shaders/lib/epilogue.wgsl: SwiGLU or
//                GeGLU with the gate in other[p, n]). Only the chosen experts' rows are read.
//                LANES invocations per output row stride over K and reduce in workgroup
//                memory; WG / LANES rows per workgroup (grid x, y), pairs in grid z.
//   moe_group:   (one workgroup) the pairs grouped by expert for a prompt: counts per expert,
//                offsets[e] = where expert e's pairs start in `order` (offsets[E] = pairs),
//                order = pair indices by expert (within an expert in no set order: each
//                pair's output is its own row, so the order does not change a result).
//   moe_matmul:  the expert GEMV's product for a prompt, one tiled matmul per expert over
//                the pairs that chose it: y[order[r]] for rows r of expert e's group. A
//                16 × 16 workgroup owns a 64 × 64 tile (grid x: columns, y: row tiles of a
//                group of at most p.c rows, z: the expert); tiles past the group return.
//                Same weighting and epilogue as moe_gemv.
//   moe_combine: out[t, n] = residual[t, n] + Σ_j y[t·k + j, n] (+ sigmoid(g[t])·s[t, n],
//                Qwen2-MoE's gated shared expert, where p.shared is 1). One invocation per
//                output element on a 2-D grid.

struct Params {
    // moe_route: tokens, experts, k, renormalize.
    // moe_gemv: n, k, pairs (unused), x_div; then weighted, epilogue.
    // moe_combine: tokens · width, width, k, shared.
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    weighted: u32,
    epilogue: u32,
    pad0: u32,
    pad1: u32,
}

override WG: u32 = 256u;
const LANES: u32 = 32u;
// The most experts a token may pick.
const MAX_K: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> w: array<elem>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<elem>;
@group(0) @binding(6) var<storage, read> other: array<elem>;
@group(0) @binding(7) var<storage, read_write> ids_out: array<u32>;
@group(0) @binding(8) var<storage, read_write> weights_out: array<f32>;
@group(0) @binding(9) var<storage, read> shared_gate: array<elem>;
@group(0) @binding(10) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(11) var<storage, read_write> order_out: array<u32>;
@group(0) @binding(12) var<storage, read_write> offsets_out: array<u32>;
@group(0) @binding(13) var<storage, read> order: array<u32>;
@group(0) @binding(14) var<storage, read> offsets: array<u32>;

var<workgroup> partial: array<f32, WG>;

// epilogue(v, i): shaders/lib/epilogue.wgsl.

@compute @workgroup_size(WG)
fn moe_route(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let token = (wg.x + wg.y * nwg.x) * WG + lid;
    let experts = p.b;
    let k = p.c;
    if (token >= p.a) { return; }
    let row = token * experts;
    var m = f32(x[row]);
    for (var e = 1u; e < experts; e++) {
        m = max(m, f32(x[row + e]));
    }
    var total = 0.0;
    for (var e = 0u; e < experts; e++) {
        total += exp(f32(x[row + e]) - m);
    }
    var chosen: array<u32, MAX_K>;
    var picked_sum = 0.0;
    for (var j = 0u; j < k; j++) {
        var best = 0u;
        var best_logit = 0.0;
        var found = false;
        for (var e = 0u; e < experts; e++) {
            var taken = false;
            for (var i = 0u; i < j; i++) {
                taken = taken || chosen[i] == e;
            }
            let l = f32(x[row + e]);
            if (!taken && (!found || l > best_logit)) {
                best = e;
                best_logit = l;
                found = true;
            }
        }
        chosen[j] = best;
        let prob = exp(best_logit - m) / total;
        ids_out[token * k + j] = best;
        weights_out[token * k + j] = prob;
        picked_sum += prob;
    }
    if (p.d != 0u) {
        for (var j = 0u; j < k; j++) {
            weights_out[token * k + j] /= picked_sum;
        }
    }
}

@compute @workgroup_size(WG)
fn moe_gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let n = p.a;
    let kk = p.b;
    let row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let pair = wg.z;
    var sum = 0.0;
    if (row < n) {
        let w0 = (ids[pair] * n + row) * kk;
        let x0 = (pair / p.d) * kk;
        for (var c = lane; c < kk; c += LANES) {
            sum = fma(f32(w[w0 + c]), f32(x[x0 + c]), sum);
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < n) {
        var v = partial[lid];
        if (p.weighted != 0u) {
            v *= weights[pair];
        }
        let i = pair * n + row;
        y[i] = elem(epilogue(v, i));
    }
}

@compute @workgroup_size(WG)
fn moe_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = (wg.x + wg.y * nwg.x) * WG + lid;
    if (e >= p.a) { return; }
    let width = p.b;
    let k = p.c;
    let t = e / width;
    let col = e % width;
    // x: the residual; w: the pairs' outputs [tokens · k, width].
    var v = f32(x[e]);
    for (var j = 0u; j < k; j++) {
        v += f32(w[(t * k + j) * width + col]);
    }
    if (p.d != 0u) {
        // other: the shared expert's output; shared_gate: its gate logit per token.
        let g = f32(shared_gate[t]);
        v += f32(other[e]) / (1.0 + exp(-g));
    }
    y[e] = elem(v);
}

// p.a: pairs, p.b: experts.
@compute @workgroup_size(WG)
fn moe_group(@builtin(local_invocation_index) lid: u32) {
    let pairs = p.a;
    let experts = p.b;
    for (var e = lid; e < experts; e += WG) {
        atomicStore(&counts[e], 0u);
    }
    storageBarrier();
    workgroupBarrier();
    for (var q = lid; q < pairs; q += WG) {
        atomicAdd(&counts[ids[q]], 1u);
    }
    storageBarrier();
    workgroupBarrier();
    if (lid == 0u) {
        var start = 0u;
        for (var e = 0u; e < experts; e++) {
            offsets_out[e] = start;
            start += atomicLoad(&counts[e]);
            // From here on counts[e] is expert e's fill cursor.
            atomicStore(&counts[e], offsets_out[e]);
        }
        offsets_out[experts] = start;
    }
    storageBarrier();
    workgroupBarrier();
    for (var q = lid; q < pairs; q += WG) {
        order_out[atomicAdd(&counts[ids[q]], 1u)] = q;
    }
}

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> x_tile: array<f32, TILE_K * TILE>;
var<workgroup> w_tile: array<f32, TILE_K * TILE>;
// The expert's group (first row in `order`, rows), read once and shared uniformly.
var<workgroup> group_first: u32;
var<workgroup> group_rows: u32;

// p.a: n, p.b: k, p.c: the most rows a group can hold (tokens), p.d: x_div.
@compute @workgroup_size(16, 16)
fn moe_matmul(@builtin(workgroup_id) wg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) flat: u32) {
    let n = p.a;
    let kk = p.b;
    let expert = wg.z;
    if (flat == 0u) {
        group_first = offsets[expert];
        group_rows = offsets[expert + 1u] - offsets[expert];
    }
    let first = workgroupUniformLoad(&group_first);
    let rows = workgroupUniformLoad(&group_rows);
    let row0 = wg.y * TILE;
    if (row0 >= rows) { return; }
    let col0 = wg.x * TILE;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < kk; k0 += TILE_K) {
        // Both tiles TILE × TILE_K, k-major, zero past the edges: 4 values an invocation.
        for (var e = flat; e < TILE * TILE_K; e += 256u) {
            let r = e / TILE_K;
            let c = e % TILE_K;
            let gk = k0 + c;
            var xv = 0.0;
            if (row0 + r < rows && gk < kk) {
                let pair = order[first + row0 + r];
                xv = f32(x[(pair / p.d) * kk + gk]);
            }
            x_tile[c * TILE + r] = xv;
            var wv = 0.0;
            if (col0 + r < n && gk < kk) {
                wv = f32(w[(expert * n + col0 + r) * kk + gk]);
            }
            w_tile[c * TILE + r] = wv;
        }
        workgroupBarrier();
        for (var t = 0u; t < TILE_K; t++) {
            let xr = t * TILE + lid.y;
            let wc = t * TILE + lid.x;
            let xv = vec4<f32>(x_tile[xr], x_tile[xr + 16u], x_tile[xr + 32u], x_tile[xr + 48u]);
            let wv = vec4<f32>(w_tile[wc], w_tile[wc + 16u], w_tile[wc + 32u], w_tile[wc + 48u]);
            acc[0] = fma(vec4<f32>(xv.x), wv, acc[0]);
            acc[1] = fma(vec4<f32>(xv.y), wv, acc[1]);
            acc[2] = fma(vec4<f32>(xv.z), wv, acc[2]);
            acc[3] = fma(vec4<f32>(xv.w), wv, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y + 16u * i;
        if (r >= rows) { break; }
        let pair = order[first + r];
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (col >= n) { break; }
            var v = acc[i][j];
            if (p.weighted != 0u) {
                v *= weights[pair];
            }
            let at = pair * n + col;
            y[at] = elem(epilogue(v, at));
        }
    }
}
