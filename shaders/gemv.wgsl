// Matrix-vector product for M = 1 (decode): y[b] = x[b] · W[b] (+ bias), then the optional
// fused epilogue of shaders/matmul.wgsl, f32 accumulation.
//   x: [batch, K]; W: [batch, N, K] (gemv_nk, a Linear weight) or [batch, K, N] (gemv_kn);
//   bias: [N]; y: [batch, N]. A batch stride of 0 shares W across the batch.
// Tiling, gemv_nk: each output row n is owned by LANES consecutive invocations that stride
//   over K (so a row is read in contiguous runs of LANES elements) and reduce their partial
//   sums in workgroup memory; a workgroup covers WG / LANES outputs.
// Tiling, gemv_kn: each invocation owns one column n within one of WG / COLS slices of K;
//   neighbouring invocations read neighbouring columns of a row of W; the slices' partial
//   sums are added in workgroup memory. A workgroup covers COLS outputs.
// gemv_nk and gemv_nk_norm read W eight elements per load when PACKED (16 bytes of f16,
//   widened in registers): the decode path's weight stream.
// gemv_nk_norm: gemv_nk of RMSNorm(x) (x / sqrt(mean(x²) + eps) * norm_w, f32 throughout), the
//   decoder's norm fused into the projection after it: each workgroup first reduces x's sum of
//   squares itself (x is one row, read from cache), then uses x[k] · norm_w[k] in the dot
//   products and scales the sums by the inverse RMS.
// gemv_nk_rows: gemv_nk over p.rows rows of x at once (a decode step of several sequences):
//   each lane keeps one partial sum per row of a group of ROWS (4) rows, so a group reads W once
//   instead of once per row; grid z is the row group, x and y rows are p.k and p.n apart.
// Output groups lie on a 2-D workgroup grid (flat = x + y * nwg.x); z is the batch.

struct Params {
    n: u32,
    k: u32,
    has_bias: u32,
    epilogue: u32,
    batch_stride_x: u32,
    batch_stride_w: u32,
    batch_stride_y: u32,
    // gemv_nk_norm only: RMSNorm's epsilon.
    eps: f32,
    // gemv_nk_rows only: rows of x.
    rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;
// gemv_nk*: read W eight elements at a time (mat2x4: 16 bytes of f16, 32 of f32); the host
// sets it when K is a multiple of 8 and W's offset allows.
override PACKED: bool = false;
const LANES: u32 = 32u;
// Rows of x per gemv_nk_rows workgroup (the lanes of a vec4 of sums).
const ROWS: u32 = 4u;
const COLS: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> w: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;
@group(0) @binding(5) var<storage, read> other: array<elem>;
@group(0) @binding(6) var<storage, read> norm_w: array<elem>;
// W again, eight elements per entry (bound to the same buffer as `w`).
@group(0) @binding(7) var<storage, read> w_packed: array<mat2x4<elem>>;

// epilogue(v, i): shaders/lib/epilogue.wgsl.

var<workgroup> partial: array<f32, WG>;

fn finish(n: u32, batch: u32, sum: f32) {
    var v = sum;
    if (p.has_bias != 0u) {
        v += f32(bias[n]);
    }
    let i = batch * p.batch_stride_y + n;
    y[i] = elem(epilogue(v, i));
}

// x[k], times the norm weight when `normed`.
fn x_at(x_base: u32, k: u32, normed: bool) -> f32 {
    var v = f32(x[x_base + k]);
    if (normed) {
        v *= f32(norm_w[k]);
    }
    return v;
}

// This lane's share of row w_row of W dotted with x: elements lane, lane + LANES, ... (or
// runs of eight of them when PACKED), so a row is read in contiguous runs.
fn row_dot(x_base: u32, w_row: u32, lane: u32, normed: bool) -> f32 {
    var sum = 0.0;
    if (PACKED) {
        let first = w_row / 8u;
        for (var i = lane; i < p.k / 8u; i += LANES) {
            let m = w_packed[first + i];
            let k0 = i * 8u;
            for (var j = 0u; j < 4u; j++) {
                sum = fma(x_at(x_base, k0 + j, normed), f32(m[0][j]), sum);
                sum = fma(x_at(x_base, k0 + 4u + j, normed), f32(m[1][j]), sum);
            }
        }
    } else {
        for (var kk = lane; kk < p.k; kk += LANES) {
            sum = fma(x_at(x_base, kk, normed), f32(w[w_row + kk]), sum);
        }
    }
    return sum;
}

// The sum of the LANES partial sums of this invocation's row (a tree in workgroup memory);
// valid in lane 0. Called by every invocation of the workgroup.
fn row_total(lid: u32, lane: u32, sum: f32) -> f32 {
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    return partial[lid];
}

@compute @workgroup_size(WG)
fn gemv_nk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let n = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let x_base = wg.z * p.batch_stride_x;
    let w_row = wg.z * p.batch_stride_w + n * p.k;

    var sum = 0.0;
    if (n < p.n) {
        sum = row_dot(x_base, w_row, lane, false);
    }
    let total = row_total(lid, lane, sum);
    if (lane == 0u && n < p.n) {
        finish(n, wg.z, total);
    }
}

@compute @workgroup_size(WG)
fn gemv_kn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let slices = WG / COLS;
    let column = lid % COLS;
    let slice = lid / COLS;
    let n = (wg.x + wg.y * nwg.x) * COLS + column;
    let x_base = wg.z * p.batch_stride_x;
    let w_base = wg.z * p.batch_stride_w;

    var sum = 0.0;
    if (n < p.n) {
        for (var kk = slice; kk < p.k; kk += slices) {
            sum = fma(f32(x[x_base + kk]), f32(w[w_base + kk * p.n + n]), sum);
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    if (slice == 0u && n < p.n) {
        var total = 0.0;
        for (var s = 0u; s < slices; s++) {
            total += partial[s * COLS + column];
        }
        finish(n, wg.z, total);
    }
}

@compute @workgroup_size(WG)
fn gemv_nk_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let n = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let x_base = wg.z * p.batch_stride_x;
    let w_row = wg.z * p.batch_stride_w + n * p.k;

    // The inverse RMS of x, reduced by the whole workgroup.
    var sum_sq = 0.0;
    for (var kk = lid; kk < p.k; kk += WG) {
        let v = f32(x[x_base + kk]);
        sum_sq = fma(v, v, sum_sq);
    }
    partial[lid] = sum_sq;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let inv_rms = inverseSqrt(partial[0] / f32(p.k) + p.eps);
    workgroupBarrier();

    var sum = 0.0;
    if (n < p.n) {
        sum = row_dot(x_base, w_row, lane, true);
    }
    let total = row_total(lid, lane, sum);
    if (lane == 0u && n < p.n) {
        finish(n, wg.z, total * inv_rms);
    }
}

@compute @workgroup_size(WG)
fn gemv_nk_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let n = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let first = wg.z * ROWS;
    let count = min(ROWS, p.rows - first);
    let w_row = n * p.k;
    // The group's four rows of x (rows past the end re-read the last one and are not
    // stored), their sums one vec4 in registers.
    let last = p.rows - 1u;
    let base = vec4<u32>(first, min(first + 1u, last), min(first + 2u, last),
                         min(first + 3u, last)) * p.k;

    var sums = vec4<f32>();
    if (n < p.n) {
        if (PACKED) {
            for (var i = lane; i < p.k / 8u; i += LANES) {
                let m = w_packed[w_row / 8u + i];
                let k0 = i * 8u;
                for (var j = 0u; j < 4u; j++) {
                    let a = base + vec4<u32>(k0 + j);
                    let b = a + vec4<u32>(4u);
                    let xa = vec4<f32>(f32(x[a.x]), f32(x[a.y]), f32(x[a.z]), f32(x[a.w]));
                    let xb = vec4<f32>(f32(x[b.x]), f32(x[b.y]), f32(x[b.z]), f32(x[b.w]));
                    sums = fma(xa, vec4<f32>(f32(m[0][j])), sums);
                    sums = fma(xb, vec4<f32>(f32(m[1][j])), sums);
                }
            }
        } else {
            for (var kk = lane; kk < p.k; kk += LANES) {
                let a = base + vec4<u32>(kk);
                let xv = vec4<f32>(f32(x[a.x]), f32(x[a.y]), f32(x[a.z]), f32(x[a.w]));
                sums = fma(xv, vec4<f32>(f32(w[w_row + kk])), sums);
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        let total = row_total(lid, lane, sums[r]);
        if (lane == 0u && n < p.n && r < count) {
            finish(n, first + r, total);
        }
    }
}
