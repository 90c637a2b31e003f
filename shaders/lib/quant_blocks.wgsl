// Decoding of ggml quantized blocks kept packed (shared by shaders/gemv_quant.wgsl,
// matmul_quant.wgsl and gather_quant.wgsl, appended by the host). The including shader
// declares the storage arrays `scales` and `quants` (u32) of a packed weight re-laid by
// src/kernels/quant.rs:
//   scales: per row, the blocks' heads (f16 scales, K-quant sub-block scales) back to back,
//     HEAD bytes a block, the row padded to whole words;
//   quants: per row, per block, the QWORDS words of the block's quant bytes as ggml stores
//     them (Q5_0/Q5_1: qh then qs; Q5_K: qh then qs; Q6_K: ql then qh).
// QTYPE is ggml's type id; QK the elements per block (32 or 256). f16 is decoded from its
// bits, so no f16 support is needed.
override QTYPE: u32;
override QK: u32;
override HEAD: u32;
override QWORDS: u32;

// Eight consecutive weights: elements 0..4 in lo, 4..8 in hi.
struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The f32 value of IEEE half-precision bits `h` (the low 16 bits), exactly.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero and subnormals: m · 2^-24.
        return select(1.0, -1.0, sign != 0u) * f32(m) * 5.9604644775390625e-8;
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// Byte `at` of the head stream (a byte offset into `scales`).
fn head_u8(at: u32) -> u32 {
    return extractBits(scales[at / 4u], 8u * (at % 4u), 8u);
}

// The f16 at even byte offset `at` of the head stream.
fn head_f16(at: u32) -> f32 {
    return half_to_f32(extractBits(scales[at / 4u], 8u * (at % 4u), 16u));
}

// The four bytes of `w` as values.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>(f32(w & 0xffu), f32((w >> 8u) & 0xffu), f32((w >> 16u) & 0xffu),
                     f32(w >> 24u));
}

// The four signed bytes of `w`.
fn signed4(w: u32) -> vec4<f32> {
    let s = bitcast<i32>(w);
    return vec4<f32>(f32(extractBits(s, 0u, 8u)), f32(extractBits(s, 8u, 8u)),
                     f32(extractBits(s, 16u, 8u)), f32(extractBits(s, 24u, 8u)));
}

// The nibbles at bit `shift` (0 or 4) of each byte of `w`.
fn nibbles4(w: u32, shift: u32) -> vec4<f32> {
    return bytes4((w >> shift) & 0x0f0f0f0fu);
}

// Bit `bit` of each byte of `w`, times 16 (the fifth bit of a 5-bit quant).
fn high4(w: u32, bit: u32) -> vec4<f32> {
    return 16.0 * bytes4((w >> bit) & 0x01010101u);
}

// Bits `e .. e + 4` of `qh`, times 16 (Q5_0/Q5_1: bit e is element e's fifth bit).
fn bits4(qh: u32, e: u32) -> vec4<f32> {
    return 16.0 * vec4<f32>(f32((qh >> e) & 1u), f32((qh >> (e + 1u)) & 1u),
                            f32((qh >> (e + 2u)) & 1u), f32((qh >> (e + 3u)) & 1u));
}

// Q4_K/Q5_K sub-block j's 6-bit scale and minimum from the 12 bytes at head byte `at`
// (ggml's get_scale_min_k4).
fn scale_min_k4(at: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(head_u8(at + j) & 63u), f32(head_u8(at + 4u + j) & 63u));
    }
    let sc = (head_u8(at + 4u + j) & 15u) | ((head_u8(at + j - 4u) >> 6u) << 4u);
    let m = (head_u8(at + 4u + j) >> 4u) | ((head_u8(at + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Elements e .. e + 8 (e a multiple of 8) of the block whose head starts at byte h and whose
// quants at word q.
fn dequant_block8(h: u32, q: u32, e: u32) -> Eight {
    switch QTYPE {
        // Q8_0: w = d·q, q int8.
        case 8u: {
            let d = head_f16(h);
            return Eight(d * signed4(quants[q + e / 4u]), d * signed4(quants[q + e / 4u + 1u]));
        }
        // Q4_0: w = d·(q - 8); Q4_1: w = d·q + m. Byte j holds q[j] low and q[j + 16] high.
        case 2u, 3u: {
            let d = head_f16(h);
            var m = -8.0 * d;
            if (QTYPE == 3u) {
                m = head_f16(h + 2u);
            }
            let w = q + (e % 16u) / 4u;
            let shift = select(0u, 4u, e >= 16u);
            return Eight(d * nibbles4(quants[w], shift) + m, d * nibbles4(quants[w + 1u], shift) + m);
        }
        // Q5_0: w = d·(q - 16); Q5_1: w = d·q + m; q's fifth bit is bit e of qh (word 0).
        case 6u, 7u: {
            let d = head_f16(h);
            var m = -16.0 * d;
            if (QTYPE == 7u) {
                m = head_f16(h + 2u);
            }
            let qh = quants[q];
            let w = q + 1u + (e % 16u) / 4u;
            let shift = select(0u, 4u, e >= 16u);
            let lo = nibbles4(quants[w], shift) + bits4(qh, e);
            let hi = nibbles4(quants[w + 1u], shift) + bits4(qh, e + 4u);
            return Eight(d * lo + m, d * hi + m);
        }
        // Q4_K / Q5_K: 8 sub-blocks of 32, w = d·sc·q - dmin·m. Byte 32j + l of qs holds
        // element 64j + l low and 64j + 32 + l high; Q5_K's fifth bits are bit 2j (+1 for
        // the high half) of qh[l].
        case 12u, 13u: {
            let d = head_f16(h);
            let dmin = head_f16(h + 2u);
            let j = e / 64u;
            let half = (e % 64u) / 32u;
            let l = e % 32u;
            let sm = scale_min_k4(h + 4u, 2u * j + half);
            let scale = d * sm.x;
            let offset = -dmin * sm.y;
            let qs = q + select(0u, 8u, QTYPE == 13u) + 8u * j + l / 4u;
            var lo = nibbles4(quants[qs], 4u * half);
            var hi = nibbles4(quants[qs + 1u], 4u * half);
            if (QTYPE == 13u) {
                lo += high4(quants[q + l / 4u], 2u * j + half);
                hi += high4(quants[q + l / 4u + 1u], 2u * j + half);
            }
            return Eight(scale * lo + offset, scale * hi + offset);
        }
        // Q6_K: 16 sub-blocks of 16, w = d·sc·(q - 32), sc int8, q = ql nibble | qh 2 bits.
        // Element 128n + 32k + l: ql byte 64n + 32(k % 2) + l (low nibble for k < 2), qh
        // byte 32n + l bits 2k; its scale is sc[8n + l / 16 + 2k] (head bytes 0..16, d at 16).
        case 14u: {
            let n = e / 128u;
            let k = (e % 128u) / 32u;
            let l = e % 32u;
            let sc = f32(bitcast<i32>(head_u8(h + 8u * n + l / 16u + 2u * k) << 24u) >> 24u);
            let scale = head_f16(h + 16u) * sc;
            let ql = q + (64u * n + 32u * (k % 2u) + l) / 4u;
            let qh = q + 32u + (32u * n + l) / 4u;
            let shift = 4u * (k / 2u);
            let lo = nibbles4(quants[ql], shift) + 16.0 * bytes4((quants[qh] >> (2u * k)) & 0x03030303u);
            let hi = nibbles4(quants[ql + 1u], shift)
                   + 16.0 * bytes4((quants[qh + 1u] >> (2u * k)) & 0x03030303u);
            return Eight(scale * (lo - 32.0), scale * (hi - 32.0));
        }
        default: {
            return Eight(vec4<f32>(), vec4<f32>());
        }
    }
}

// Weights 8c .. 8c + 8 of a row whose heads start at scales word `head0` and whose quants at
// quants word `quant0`.
fn dequant8(head0: u32, quant0: u32, c: u32) -> Eight {
    let b = c / (QK / 8u);
    return dequant_block8(4u * head0 + b * HEAD, quant0 + b * QWORDS, (c % (QK / 8u)) * 8u);
}
