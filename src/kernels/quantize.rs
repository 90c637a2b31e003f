//! f32 values into ggml blocks (the other direction of [`super::quant::dequantize`]), for
//! quantizing a safetensors checkpoint at load (`--quant`), and the recipe that says which
//! tensor gets which type.
//!
//! Q8_0 and Q4_0 follow ggml's reference quantizers bit for bit (f32 arithmetic, the same
//! rounding; checked against the `gguf` package). Q4_K and Q6_K use a plain min/max (or
//! max-magnitude) fit per sub-block, without llama.cpp's iterative search: the same block
//! formats, a little more error.

use half::f16;

use super::quant::GgmlType;
use crate::error::{Error, Result};

/// What `--quant` asks for, named after the type of most weights.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantRecipe {
    Q8_0,
    Q4_0,
    Q4_K,
}

impl std::str::FromStr for QuantRecipe {
    type Err = Error;
    fn from_str(s: &str) -> Result<QuantRecipe> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(QuantRecipe::Q8_0),
            "q4_0" => Ok(QuantRecipe::Q4_0),
            "q4_k" => Ok(QuantRecipe::Q4_K),
            other => Err(Error::Invalid(format!(
                "unknown quantization {other:?}: q8_0, q4_0 or q4_k"
            ))),
        }
    }
}

/// Which part of a decoder a tensor is, for the recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightRole {
    /// A projection inside a layer (attention, MLP).
    Projection,
    /// The token embedding (gathered, not multiplied) when the output has its own weight.
    Embedding,
    /// The output projection, or a tied embedding that serves as it.
    Output,
}

impl QuantRecipe {
    /// The type a `[rows, cols]` weight of `role` is stored in, as llama.cpp's recipes do:
    /// everything in the named type, except the output in Q6_K for the 4-bit recipes (its
    /// errors reach every logit). A row that is not whole blocks of that type falls back to a
    /// 32-element type (Q4_K → Q4_0, Q6_K → Q8_0), and to none (kept in f32) when it is not
    /// whole blocks of 32 either.
    pub fn type_for(self, role: WeightRole, cols: usize) -> Option<GgmlType> {
        let wanted = match (self, role) {
            (QuantRecipe::Q8_0, _) => GgmlType::Q8_0,
            (_, WeightRole::Output) => GgmlType::Q6_K,
            (QuantRecipe::Q4_0, _) => GgmlType::Q4_0,
            (QuantRecipe::Q4_K, _) => GgmlType::Q4_K,
        };
        let fits = |t: GgmlType| cols.is_multiple_of(t.block().0 as usize);
        let fallback = match wanted {
            GgmlType::Q4_K => GgmlType::Q4_0,
            GgmlType::Q6_K => GgmlType::Q8_0,
            other => other,
        };
        [wanted, fallback]
            .into_iter()
            .find(|&t| cols > 0 && fits(t))
    }
}

/// `values` (rows of whole blocks) as blocks of `t`.
pub fn quantize(t: GgmlType, values: &[f32]) -> Result<Vec<u8>> {
    let (block, block_bytes) = t.block();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    let quantize_block: fn(&[f32], &mut [u8]) = match t {
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q6_K => q6_k,
        other => {
            return Err(Error::Invalid(format!(
                "tessera does not quantize to {other:?}"
            )));
        }
    };
    if !values.len().is_multiple_of(block) {
        return Err(Error::Invalid(format!(
            "{} values are not whole {t:?} blocks of {block}",
            values.len()
        )));
    }
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "cannot quantize a non-finite value ({bad})"
        )));
    }
    let mut out = vec![0u8; values.len() / block * block_bytes];
    for (x, b) in values
        .chunks_exact(block)
        .zip(out.chunks_exact_mut(block_bytes))
    {
        quantize_block(x, b);
    }
    Ok(out)
}

fn put_f16(out: &mut [u8], v: f32) {
    out.copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// ggml's `quantize_row_q8_0_ref`: d = max|x| / 127, q = round(x / d).
fn q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    put_f16(&mut out[0..2], d);
    for (o, v) in out[2..34].iter_mut().zip(x) {
        *o = ((v * id).round() as i8) as u8;
    }
}

/// ggml's `quantize_row_q4_0_ref`: d = (the value of largest magnitude) / -8,
/// q = trunc(x / d + 8.5) clamped to 15, element j low and j + 16 high in byte j.
fn q4_0(x: &[f32], out: &mut [u8]) {
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    put_f16(&mut out[0..2], d);
    let q = |v: f32| ((v * id + 8.5).trunc() as u8).min(15);
    for j in 0..16 {
        out[2 + j] = q(x[j]) | (q(x[j + 16]) << 4);
    }
}

/// Eight 6-bit scales and minimums in ggml's 12 bytes (the inverse of `get_scale_min_k4`).
fn pack_scales_k4(sc: &[u8; 8], m: &[u8; 8], out: &mut [u8]) {
    for j in 0..4 {
        out[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        out[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        out[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
    }
}

/// Q4_K: 8 sub-blocks of 32, each w = d·sc·q - dmin·m with its own min/max fit.
fn q4_k(x: &[f32], out: &mut [u8]) {
    let mut scale = [0.0f32; 8];
    let mut low = [0.0f32; 8];
    for (s, sub) in x.chunks_exact(32).enumerate() {
        let min = sub.iter().fold(0.0f32, |a, &v| a.min(v));
        let max = sub.iter().fold(f32::MIN, |a, &v| a.max(v));
        scale[s] = (max - min) / 15.0;
        low[s] = -min;
    }
    let d = scale.iter().fold(0.0f32, |a, &v| a.max(v)) / 63.0;
    let dmin = low.iter().fold(0.0f32, |a, &v| a.max(v)) / 63.0;
    // The stored (f16) d and dmin are what a reader multiplies by.
    put_f16(&mut out[0..2], d);
    put_f16(&mut out[2..4], dmin);
    let d = f16::from_f32(d).to_f32();
    let dmin = f16::from_f32(dmin).to_f32();
    let six = |v: f32, by: f32| {
        if by > 0.0 {
            (v / by).round().clamp(0.0, 63.0) as u8
        } else {
            0
        }
    };
    let sc: [u8; 8] = std::array::from_fn(|s| six(scale[s], d).max(1));
    let m: [u8; 8] = std::array::from_fn(|s| six(low[s], dmin));
    pack_scales_k4(&sc, &m, &mut out[4..16]);
    let q: Vec<u8> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = i / 32;
            let step = d * f32::from(sc[s]);
            let offset = dmin * f32::from(m[s]);
            if step > 0.0 {
                ((v + offset) / step).round().clamp(0.0, 15.0) as u8
            } else {
                0
            }
        })
        .collect();
    for j in 0..4 {
        for l in 0..32 {
            out[16 + 32 * j + l] = q[64 * j + l] | (q[64 * j + 32 + l] << 4);
        }
    }
}

/// Q6_K: 16 sub-blocks of 16, each w = d·sc·(q - 32) with sc an int8 that maps the
/// sub-block's value of largest magnitude to q = 0 (-32, the end with one more level).
fn q6_k(x: &[f32], out: &mut [u8]) {
    let signed_max: [f32; 16] = std::array::from_fn(|s| {
        x[16 * s..16 * s + 16]
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
    });
    let scale: [f32; 16] = std::array::from_fn(|s| signed_max[s] / -32.0);
    let d = scale.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0;
    put_f16(&mut out[208..210], d);
    let d = f16::from_f32(d).to_f32();
    let sc: [i8; 16] = std::array::from_fn(|s| {
        if d > 0.0 {
            (scale[s] / d).round().clamp(-127.0, 127.0) as i8
        } else {
            0
        }
    });
    for (o, s) in out[192..208].iter_mut().zip(sc) {
        *o = s as u8;
    }
    let q: Vec<u8> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let step = d * f32::from(sc[i / 16]);
            if step != 0.0 {
                ((v / step).round() + 32.0).clamp(0.0, 63.0) as u8
            } else {
                32
            }
        })
        .collect();
    for n in 0..2 {
        for l in 0..32 {
            let at = |k: usize| q[128 * n + 32 * k + l];
            out[64 * n + l] = (at(0) & 15) | ((at(2) & 15) << 4);
            out[64 * n + l + 32] = (at(1) & 15) | ((at(3) & 15) << 4);
            out[128 + 32 * n + l] =
                (at(0) >> 4) | ((at(1) >> 4) << 2) | ((at(2) >> 4) << 4) | ((at(3) >> 4) << 6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::quant::dequantize;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::for_case(seed, "quantize");
        (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
    }

    /// Each type reads back within its step: half a quant step (plus the f16 scales'
    /// rounding) for values in ±1; Q4_0 and Q6_K a whole step at the end opposite the
    /// largest magnitude (-8 .. 7 and -32 .. 31 around zero: that end clamps).
    #[test]
    fn quantized_blocks_read_back_close_to_the_values() {
        let x = values(4 * 256, 3);
        for (t, bound) in [
            (GgmlType::Q8_0, 0.5 / 127.0 + 1e-3),
            (GgmlType::Q4_0, 1.0 / 8.0 + 1e-3),
            (GgmlType::Q4_K, 0.5 * 2.0 / 15.0 + 0.02),
            (GgmlType::Q6_K, 1.0 / 32.0 + 0.01),
        ] {
            let blocks = quantize(t, &x).unwrap();
            let back = dequantize(t, &blocks, x.len()).unwrap();
            let worst = back
                .iter()
                .zip(&x)
                .map(|(b, &v)| (b - f64::from(v)).abs())
                .fold(0.0, f64::max);
            assert!(worst <= bound, "{t:?}: worst error {worst} > {bound}");
        }
    }

    /// Q8_0 and Q4_0 give the very bytes of the `gguf` package's quantizer (ggml's
    /// reference), ties included (tests/fixtures/quant/blocks.json).
    #[test]
    fn q8_0_and_q4_0_match_the_gguf_package_bit_for_bit() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quant/blocks.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for t in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let case = &fixture["quantize"][format!("{t:?}")];
            let values: Vec<f32> = case["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let bytes: String = quantize(t, &values)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(bytes, case["bytes"].as_str().unwrap(), "{t:?}");
        }
    }

    #[test]
    fn zeros_partial_blocks_and_other_types() {
        for t in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let zeros = vec![0.0; 256];
            let back = dequantize(t, &quantize(t, &zeros).unwrap(), 256).unwrap();
            assert!(back.iter().all(|&v| v == 0.0), "{t:?}");
        }
        assert!(quantize(GgmlType::Q8_0, &[0.0; 31]).is_err());
        assert!(quantize(GgmlType::Q4_K, &[0.0; 32]).is_err());
        assert!(quantize(GgmlType::Q5_1, &[0.0; 32]).is_err());
        assert!(quantize(GgmlType::Q8_0, &[f32::NAN; 32]).is_err());
    }

    #[test]
    fn the_recipe_keeps_rows_in_whole_blocks() {
        use WeightRole::*;
        assert_eq!(
            QuantRecipe::Q4_K.type_for(Projection, 512),
            Some(GgmlType::Q4_K)
        );
        assert_eq!(
            QuantRecipe::Q4_K.type_for(Projection, 96),
            Some(GgmlType::Q4_0)
        );
        assert_eq!(QuantRecipe::Q4_K.type_for(Output, 64), Some(GgmlType::Q8_0));
        assert_eq!(
            QuantRecipe::Q4_0.type_for(Output, 256),
            Some(GgmlType::Q6_K)
        );
        assert_eq!(QuantRecipe::Q8_0.type_for(Embedding, 30), None);
        assert!("q5_k".parse::<QuantRecipe>().is_err());
    }
}
