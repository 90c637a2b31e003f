// Matrix-vector product with a block-quantized weight kept packed (decode): y = W · x, with
// W [N, K] stored as ggml blocks (Q8_0: 32 weights w = d·q, q an int8; Q4_0: 32 weights
// w = d·(q - 8), q 4-bit; Q4_K: 256 weights in 8 sub-blocks of 32, w = d·sc·q - dmin·m with
// 6-bit sub-block scales sc and minimums m), dequantized in registers, f32 accumulation.
//   x: [M, K] (`elem`); y: [M, N] (`elem`): grid z walks the M rows of x (a prefill runs
//   the product once per token, re-reading W; decode has M = 1).
//   scales: per row, the blocks' heads one after another: Q8_0 / Q4_0 their f16 scale d, two
//     to a u32; Q4_K d and dmin in one word and the 12 bytes of packed 6-bit scales in three
//     (f16 decoded from the bits, so no f16 support is needed); Q6_K its 16 int8 sub-block
//     scales and d in 18 bytes, packed back to back; scale_words words a row.
//   quants: per row, the blocks' quants as they lie in the GGUF block, 32 bits
//     a word (Q8_0: 8 words a block, byte j = q[j]; Q4_0: 4 words, byte j holds q[j] in its
//     low and q[j + 16] in its high nibble; Q4_K: 32 words, byte 32i + l holds sub-block 2i's
//     q[l] low and sub-block 2i + 1's high; Q6_K: 48 words, the low 4 bits ql[128] then the
//     high 2 bits qh[64] of ggml's layout). src/kernels/quant.rs re-lays GGUF blocks so.
// Tiling: LANES consecutive invocations own one output row and stride over its blocks (so a
// row's quants are read in contiguous runs), then reduce their partial sums in workgroup
// memory; a workgroup covers WG / LANES rows, on a 2-D grid (flat = x + y * nwg.x); z is the
// row of x.

struct Params {
    n: u32,
    k: u32,
    // Blocks per row (K / 32) and scale words per row (blocks / 2, rounded up).
    blocks: u32,
    scale_words: u32,
}

override WG: u32 = 256u;
const LANES: u32 = 32u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> quants: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;

var<workgroup> partial: array<f32, WG>;

// The f32 value of IEEE half-precision bits `h` (the low 16 bits), exactly.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero and subnormals: m · 2^-24.
        return bitcast<f32>(sign) + select(1.0, -1.0, sign != 0u) * f32(m) * 5.9604644775390625e-8;
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

fn block_scale(row: u32, b: u32) -> f32 {
    let word = scales[row * p.scale_words + b / 2u];
    return half_to_f32(word >> (16u * (b % 2u)));
}

// Sums the LANES partial sums of each row and writes y[z][row] (rows past N write nothing);
// every invocation calls it (it holds barriers).
fn write_row(lid: u32, row: u32, z: u32, sum: f32) {
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if (lid % LANES < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid % LANES == 0u && row < p.n) {
        y[z * p.n + row] = elem(partial[lid]);
    }
}

@compute @workgroup_size(WG)
fn gemv_q8_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let xb = wg.z * p.k;
    var sum = 0.0;
    if (row < p.n) {
        for (var b = lane; b < p.blocks; b += LANES) {
            let q0 = (row * p.blocks + b) * 8u;
            let x0 = b * 32u;
            var s = 0.0;
            for (var w = 0u; w < 8u; w++) {
                let q = bitcast<i32>(quants[q0 + w]);
                let xi = x0 + w * 4u;
                s += f32(extractBits(q, 0u, 8u)) * f32(x[xb + xi])
                   + f32(extractBits(q, 8u, 8u)) * f32(x[xb + xi + 1u])
                   + f32(extractBits(q, 16u, 8u)) * f32(x[xb + xi + 2u])
                   + f32(extractBits(q, 24u, 8u)) * f32(x[xb + xi + 3u]);
            }
            sum += block_scale(row, b) * s;
        }
    }
    write_row(lid, row, wg.z, sum);
}

@compute @workgroup_size(WG)
fn gemv_q4_0(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let xb = wg.z * p.k;
    var sum = 0.0;
    if (row < p.n) {
        for (var b = lane; b < p.blocks; b += LANES) {
            let q0 = (row * p.blocks + b) * 4u;
            let x0 = b * 32u;
            var s = 0.0;
            for (var w = 0u; w < 4u; w++) {
                let q = quants[q0 + w];
                for (var i = 0u; i < 4u; i++) {
                    let j = w * 4u + i;
                    let byte = extractBits(q, 8u * i, 8u);
                    s += (f32(byte & 15u) - 8.0) * f32(x[xb + x0 + j])
                       + (f32(byte >> 4u) - 8.0) * f32(x[xb + x0 + j + 16u]);
                }
            }
            sum += block_scale(row, b) * s;
        }
    }
    write_row(lid, row, wg.z, sum);
}

// Byte i (0..16) of Q4_K block b's head in row `row`.
fn head_byte(row: u32, b: u32, i: u32) -> u32 {
    let word = scales[row * p.scale_words + b * 4u + i / 4u];
    return extractBits(word, 8u * (i % 4u), 8u);
}

// Q4_K sub-block j's 6-bit scale and minimum (ggml's get_scale_min_k4, on head bytes 4..16).
fn scale_min_k4(row: u32, b: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(head_byte(row, b, 4u + j) & 63u),
                         f32(head_byte(row, b, 8u + j) & 63u));
    }
    let sc = (head_byte(row, b, 8u + j) & 15u) | ((head_byte(row, b, j) >> 6u) << 4u);
    let m = (head_byte(row, b, 8u + j) >> 4u) | ((head_byte(row, b, 4u + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

@compute @workgroup_size(WG)
fn gemv_q4_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let xb = wg.z * p.k;
    var sum = 0.0;
    if (row < p.n) {
        for (var b = lane; b < p.blocks; b += LANES) {
            let dd = scales[row * p.scale_words + b * 4u];
            let d = half_to_f32(dd & 0xffffu);
            let dmin = half_to_f32(dd >> 16u);
            let q0 = (row * p.blocks + b) * 32u;
            let x0 = b * 256u;
            for (var i = 0u; i < 4u; i++) {
                let lo_sm = scale_min_k4(row, b, 2u * i);
                let hi_sm = scale_min_k4(row, b, 2u * i + 1u);
                var lo_dot = 0.0;
                var hi_dot = 0.0;
                var lo_x = 0.0;
                var hi_x = 0.0;
                for (var w = 0u; w < 8u; w++) {
                    let q = quants[q0 + 8u * i + w];
                    for (var k = 0u; k < 4u; k++) {
                        let l = 4u * w + k;
                        let byte = extractBits(q, 8u * k, 8u);
                        let xl = f32(x[xb + x0 + 64u * i + l]);
                        let xh = f32(x[xb + x0 + 64u * i + 32u + l]);
                        lo_dot += f32(byte & 15u) * xl;
                        hi_dot += f32(byte >> 4u) * xh;
                        lo_x += xl;
                        hi_x += xh;
                    }
                }
                sum += d * (lo_sm.x * lo_dot + hi_sm.x * hi_dot)
                     - dmin * (lo_sm.y * lo_x + hi_sm.y * hi_x);
            }
        }
    }
    write_row(lid, row, wg.z, sum);
}

// Byte `i` of the head stream of row `row` (heads packed back to back, any size).
fn row_head_byte(row: u32, i: u32) -> u32 {
    return extractBits(scales[row * p.scale_words + i / 4u], 8u * (i % 4u), 8u);
}

// Byte `i` of the quant words starting at word `first`.
fn quant_byte(first: u32, i: u32) -> u32 {
    return extractBits(quants[first + i / 4u], 8u * (i % 4u), 8u);
}

@compute @workgroup_size(WG)
fn gemv_q6_k(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = (wg.x + wg.y * nwg.x) * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let xb = wg.z * p.k;
    var sum = 0.0;
    if (row < p.n) {
        for (var b = lane; b < p.blocks; b += LANES) {
            let head = b * 18u;
            let d = half_to_f32(row_head_byte(row, head + 16u) | (row_head_byte(row, head + 17u) << 8u));
            let q0 = (row * p.blocks + b) * 48u;
            let x0 = xb + b * 256u;
            for (var n = 0u; n < 2u; n++) {
                // Per 16-row sub-block: the dot of its 6-bit quants (centred) with x.
                var dots = array<f32, 8>();
                for (var l = 0u; l < 32u; l++) {
                    let lo = quant_byte(q0, 64u * n + l);
                    let lo2 = quant_byte(q0, 64u * n + l + 32u);
                    let hi = quant_byte(q0, 128u + 32u * n + l);
                    let is = l / 16u;
                    let y = x0 + 128u * n + l;
                    dots[is] += (f32((lo & 15u) | ((hi & 3u) << 4u)) - 32.0) * f32(x[y]);
                    dots[is + 2u] += (f32((lo2 & 15u) | (((hi >> 2u) & 3u) << 4u)) - 32.0) * f32(x[y + 32u]);
                    dots[is + 4u] += (f32((lo >> 4u) | (((hi >> 4u) & 3u) << 4u)) - 32.0) * f32(x[y + 64u]);
                    dots[is + 6u] += (f32((lo2 >> 4u) | (((hi >> 6u) & 3u) << 4u)) - 32.0) * f32(x[y + 96u]);
                }
                for (var j = 0u; j < 8u; j++) {
                    let sc = f32(bitcast<i32>(row_head_byte(row, head + 8u * n + j) << 24u) >> 24u);
                    sum += d * sc * dots[j];
                }
            }
        }
    }
    write_row(lid, row, wg.z, sum);
}
