//! ggml's block formats: how a GGUF tensor's elements are stored (plain f32/f16/bf16, or
//! quantized blocks of 32 or 256 values with f16 scales), and an f64 dequantization of each
//! block type written from the format's definition, the reference that packed kernels are
//! checked against (and what a loader can use to widen a quantized tensor).
//!
//! Checked against the `gguf` package's own dequantizer on random blocks
//! (`tools/make_quant_fixture.py`, `tests/fixtures/quant/blocks.json`).

use half::{bf16, f16};

use crate::error::{Error, Result};

/// A ggml tensor type: how its elements are stored.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    I16,
    I32,
    I64,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
}

impl GgmlType {
    /// The block types the packed kernels read (`kernels::packed`).
    pub const PACKED: [GgmlType; 8] = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// ggml's numeric id of the type.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
        }
    }

    /// The type with ggml's numeric id, if tessera knows it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            _ => return None,
        })
    }

    /// Elements per block and bytes per block (1 and the element size for plain types).
    pub fn block(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            F64 | I64 => (1, 8),
            I8 => (1, 1),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
        }
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f64 {
    f64::from(f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32())
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K / Q5_K block's 12 packed
/// scale bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (f64, f64) {
    let (d, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f64::from(d), f64::from(m))
}

/// Dequantizes one block of `t` (`block.len()` is its byte size) into `out` (its elements).
fn dequantize_block(t: GgmlType, block: &[u8], out: &mut [f64]) {
    use GgmlType::*;
    match t {
        Q8_0 => {
            let d = f16_at(block, 0);
            for (o, &q) in out.iter_mut().zip(&block[2..34]) {
                *o = d * f64::from(q as i8);
            }
        }
        Q4_0 | Q4_1 => {
            let d = f16_at(block, 0);
            let (m, qs, offset) = if t == Q4_1 {
                (f16_at(block, 2), &block[4..20], 0.0)
            } else {
                (0.0, &block[2..18], 8.0)
            };
            for (j, &q) in qs.iter().enumerate() {
                out[j] = d * (f64::from(q & 0xF) - offset) + m;
                out[j + 16] = d * (f64::from(q >> 4) - offset) + m;
            }
        }
        Q5_0 | Q5_1 => {
            let d = f16_at(block, 0);
            let (m, rest, offset) = if t == Q5_1 {
                (f16_at(block, 2), &block[4..], 0.0)
            } else {
                (0.0, &block[2..], 16.0)
            };
            let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let qs = &rest[4..20];
            for (j, &q) in qs.iter().enumerate() {
                let high0 = ((qh >> j) << 4) & 0x10;
                let high1 = (qh >> (j + 12)) & 0x10;
                out[j] = d * (f64::from(u32::from(q & 0xF) | high0) - offset) + m;
                out[j + 16] = d * (f64::from(u32::from(q >> 4) | high1) - offset) + m;
            }
        }
        Q4_K | Q5_K => {
            let d = f16_at(block, 0);
            let dmin = f16_at(block, 2);
            let scales = &block[4..16];
            let (qh, qs) = if t == Q5_K {
                (Some(&block[16..48]), &block[48..176])
            } else {
                (None, &block[16..144])
            };
            for j in 0..4 {
                let (sc1, m1) = scale_min_k4(2 * j, scales);
                let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                let q = &qs[32 * j..32 * j + 32];
                for l in 0..32 {
                    let (mut lo, mut hi) = (f64::from(q[l] & 0xF), f64::from(q[l] >> 4));
                    if let Some(qh) = qh {
                        lo += if qh[l] & (1 << (2 * j)) != 0 {
                            16.0
                        } else {
                            0.0
                        };
                        hi += if qh[l] & (2 << (2 * j)) != 0 {
                            16.0
                        } else {
                            0.0
                        };
                    }
                    out[64 * j + l] = d * sc1 * lo - dmin * m1;
                    out[64 * j + 32 + l] = d * sc2 * hi - dmin * m2;
                }
            }
        }
        Q6_K => {
            let (ql, qh, scales) = (&block[0..128], &block[128..192], &block[192..208]);
            let d = f16_at(block, 208);
            for n in 0..2 {
                let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &scales[8 * n..]);
                let y = &mut out[128 * n..128 * n + 128];
                for l in 0..32 {
                    let is = l / 16;
                    let six = |low: u8, shift: u32| {
                        f64::from(i32::from(low) | (i32::from((qh[l] >> shift) & 3) << 4)) - 32.0
                    };
                    let scale = |k: usize| d * f64::from(sc[is + k] as i8);
                    y[l] = scale(0) * six(ql[l] & 0xF, 0);
                    y[l + 32] = scale(2) * six(ql[l + 32] & 0xF, 2);
                    y[l + 64] = scale(4) * six(ql[l] >> 4, 4);
                    y[l + 96] = scale(6) * six(ql[l + 32] >> 4, 6);
                }
            }
        }
        F32 => out[0] = f64::from(f32::from_le_bytes([block[0], block[1], block[2], block[3]])),
        F16 => out[0] = f16_at(block, 0),
        BF16 => out[0] = f64::from(bf16::from_le_bytes([block[0], block[1]]).to_f32()),
        _ => unreachable!("dequantize refuses the other types first"),
    }
}

/// The `elements` values stored in `bytes` as `t`, in f64: the reference every quantized
/// kernel is checked against. Refuses types without a dequantizer here, element counts that
/// are not whole blocks, and byte counts that do not match.
pub fn dequantize(t: GgmlType, bytes: &[u8], elements: usize) -> Result<Vec<f64>> {
    use GgmlType::*;
    let supported = matches!(
        t,
        F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4_K | Q5_K | Q6_K
    );
    if !supported {
        return Err(Error::Invalid(format!("{t:?} tensors are not supported")));
    }
    let (block, block_bytes) = t.block();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    let blocks = elements / block;
    if !elements.is_multiple_of(block) || blocks.checked_mul(block_bytes) != Some(bytes.len()) {
        return Err(Error::Invalid(format!(
            "{elements} elements of {t:?} are {} bytes in whole blocks of {block}, not {}",
            blocks.saturating_mul(block_bytes),
            bytes.len()
        )));
    }
    let mut out = vec![0.0; elements];
    for (chunk, y) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(block))
    {
        dequantize_block(t, chunk, y);
    }
    Ok(out)
}

/// A `[rows, cols]` quantized weight re-laid for aligned loads on the GPU
/// (`shaders/lib/quant_blocks.wgsl`). Each GGUF block splits into its head (the f16 scales and, for
/// K-quants, the packed sub-block scales) and its quant bytes. Per row, the heads lie one
/// after another in `scales` (padded to a whole u32 at the row's end: two 2-byte heads share
/// a word), and the quant bytes in `quants`, as u32 words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relaid {
    pub rows: usize,
    pub cols: usize,
    /// `[rows, scale_words(t, cols)]`
    pub scales: Vec<u32>,
    /// `[rows · blocks · quant words]`
    pub quants: Vec<u32>,
}

/// Where a block of a type the packed kernels read keeps its head (scales) and its quants:
/// byte ranges within the block. Every quant range is whole words.
fn packed_split(t: GgmlType) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    use GgmlType::*;
    match t {
        // d (f16); 32 int8 quants.
        Q8_0 => Some((0..2, 2..34)),
        // d; 16 bytes of nibbles.
        Q4_0 => Some((0..2, 2..18)),
        // d, m; nibbles.
        Q4_1 => Some((0..4, 4..20)),
        // d; qh (32 fifth bits), nibbles.
        Q5_0 => Some((0..2, 2..22)),
        // d, m; qh, nibbles.
        Q5_1 => Some((0..4, 4..24)),
        // d, dmin (f16) and the 12 bytes of 6-bit sub-block scales and minimums; nibbles.
        Q4_K => Some((0..16, 16..144)),
        // As Q4_K; qh[32] then the nibbles.
        Q5_K => Some((0..16, 16..176)),
        // ql[128] and qh[64]; then 16 i8 sub-block scales and d (f16).
        Q6_K => Some((192..210, 0..192)),
        _ => None,
    }
}

/// How the packed kernels see a block type: elements per block, head bytes per block (in the
/// row's head stream) and quant words per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedFormat {
    pub block: usize,
    pub head_bytes: usize,
    pub quant_words: usize,
}

/// The packed layout of `t`, or an error naming the type when no packed kernel reads it.
pub fn packed_format(t: GgmlType) -> Result<PackedFormat> {
    let (head, quants) = packed_split(t).ok_or_else(|| unsupported(t))?;
    Ok(PackedFormat {
        block: t.block().0 as usize,
        head_bytes: head.len(),
        quant_words: quants.len() / 4,
    })
}

/// Scale words per row of `cols` elements of `t` (0 for a type no packed kernel reads).
pub fn scale_words(t: GgmlType, cols: usize) -> usize {
    let (block, _) = t.block();
    packed_split(t).map_or(0, |(head, _)| {
        (cols / block as usize * head.len()).div_ceil(4)
    })
}

fn unsupported(t: GgmlType) -> Error {
    Error::Invalid(format!("no packed kernel reads {t:?} yet"))
}

/// Re-lays `bytes` (GGUF blocks of a `[rows, cols]` tensor of type `t`) for the packed
/// kernels.
pub fn relay(t: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Result<Relaid> {
    let (head_range, quant_range) = packed_split(t).ok_or_else(|| unsupported(t))?;
    let (head, quant_bytes) = (head_range.len(), quant_range.len());
    let (block, block_bytes) = t.block();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    let blocks = cols / block;
    let expected = rows
        .checked_mul(blocks)
        .and_then(|b| b.checked_mul(block_bytes));
    if !cols.is_multiple_of(block) || expected != Some(bytes.len()) {
        return Err(Error::Invalid(format!(
            "a [{rows}, {cols}] {t:?} tensor is whole {block}-element rows of {block_bytes}-byte \
             blocks; got {} bytes",
            bytes.len()
        )));
    }
    let per_row = scale_words(t, cols);
    let mut head_bytes = vec![0u8; per_row * 4];
    let mut scales = Vec::with_capacity(rows * per_row);
    let mut quants = Vec::with_capacity(rows * blocks * quant_bytes / 4);
    for row in bytes.chunks_exact(blocks * block_bytes) {
        head_bytes.fill(0);
        for (b, block) in row.chunks_exact(block_bytes).enumerate() {
            head_bytes[b * head..(b + 1) * head].copy_from_slice(&block[head_range.clone()]);
            quants.extend(words(&block[quant_range.clone()]));
        }
        scales.extend(words(&head_bytes));
    }
    Ok(Relaid {
        rows,
        cols,
        scales,
        quants,
    })
}

fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// The GGUF block bytes `r` was made from: the inverse of [`relay`], so the packed kernels'
/// reference is [`dequantize`] of the very blocks.
pub fn unrelay(t: GgmlType, r: &Relaid) -> Result<Vec<u8>> {
    let (head_range, quant_range) = packed_split(t).ok_or_else(|| unsupported(t))?;
    let (head, quant_bytes) = (head_range.len(), quant_range.len());
    let block_bytes = t.block().1 as usize;
    let blocks = r.cols / t.block().0 as usize;
    let per_row = scale_words(t, r.cols);
    let quant_words = quant_bytes / 4;
    let mut bytes = Vec::with_capacity(r.rows * blocks * (head + quant_bytes));
    for row in 0..r.rows {
        let heads: Vec<u8> = r.scales[row * per_row..(row + 1) * per_row]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        for b in 0..blocks {
            let mut block = vec![0u8; block_bytes];
            block[head_range.clone()].copy_from_slice(&heads[b * head..(b + 1) * head]);
            let first = (row * blocks + b) * quant_words;
            let quants: Vec<u8> = r.quants[first..first + quant_words]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            block[quant_range.clone()].copy_from_slice(&quants);
            bytes.extend_from_slice(&block);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quant/blocks.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn every_block_type_matches_the_gguf_package() {
        use GgmlType::*;
        let fixture = fixture();
        for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K] {
            let case = &fixture[format!("{t:?}")];
            let bytes = hex(case["bytes"].as_str().unwrap());
            let want: Vec<f64> = case["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got = dequantize(t, &bytes, want.len()).unwrap();
            // The package computes in f32; ours in f64 from the same f16 scales.
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let tolerance = 1e-6 * (1.0 + w.abs());
                assert!((g - w).abs() <= tolerance, "{t:?} element {i}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn relaying_keeps_every_block() {
        let fixture = fixture();
        for t in GgmlType::PACKED {
            let (block, block_bytes) = t.block();
            let (block, block_bytes) = (block as usize, block_bytes as usize);
            let head = packed_format(t).unwrap().head_bytes;
            // Three blocks, as one row or as three.
            let bytes = hex(fixture[format!("{t:?}")]["bytes"].as_str().unwrap());
            assert_eq!(bytes.len(), 3 * block_bytes, "{t:?}");
            for (rows, cols) in [(1, 3 * block), (3, block)] {
                let relaid = relay(t, &bytes, rows, cols).unwrap();
                let per_row = (cols / block * head).div_ceil(4);
                assert_eq!(relaid.scales.len(), rows * per_row, "{t:?}");
                assert_eq!(unrelay(t, &relaid).unwrap(), bytes, "{t:?}");
            }
        }
        assert!(relay(GgmlType::Q2_K, &[0; 84], 1, 256).is_err());
        assert!(relay(GgmlType::Q8_0, &[0; 34], 1, 31).is_err());
    }

    #[test]
    fn partial_blocks_and_wrong_lengths_are_refused() {
        let err = dequantize(GgmlType::Q8_0, &[0; 34], 31)
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole blocks"), "{err}");
        assert!(dequantize(GgmlType::Q8_0, &[0; 33], 32).is_err());
        assert!(dequantize(GgmlType::Q2_K, &[0; 84], 256).is_err());
        assert_eq!(dequantize(GgmlType::F16, &[0, 0x3c], 1).unwrap(), vec![1.0]);
    }
}
