//! Case specifications for the mixture-of-experts kernels.

use super::compare::Tolerance;
use super::epilogue_suffix;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::matmul::{Epilogue, EpilogueKind};
use crate::kernels::{KernelCall, moe};
use crate::tensor::{DType, Tensor};

/// Routing `tokens` rows of router logits over `experts` to the top `top_k`. The output is
/// the routing as a `[tokens · top_k, experts]` one-hot matrix of weights (row `t·k + j`
/// holds weight j of token t at its expert's column): the route kernel followed by the
/// expert GEMV over identity experts, so a wrong id and a wrong weight both show. With
/// `ties`, logits are drawn from a few values, so most rows hold equal logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoeRouteSpec {
    pub tokens: usize,
    pub experts: usize,
    pub top_k: usize,
    pub renormalize: bool,
    pub ties: bool,
}

impl CaseSpec for MoeRouteSpec {
    fn kernel(&self) -> &'static str {
        "moe_route"
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "tokens={} top{} of {}",
            self.tokens, self.top_k, self.experts
        );
        if self.renormalize {
            s += " renormalized";
        }
        if self.ties {
            s += " ties";
        }
        s
    }

    fn traffic(&self) -> usize {
        self.tokens * self.experts
    }

    /// Probabilities from f32 exp and sums.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 1e-5,
        }
    }

    /// The logits, then the identity experts stacked (`[experts · experts, 1]`... as
    /// `[experts², 1]` rows of one column) and the one-valued input they read.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let mut logits = random(&[self.tokens, self.experts], -4.0, 4.0);
        if self.ties {
            // Values on a grid of 4: many equal logits per row.
            for v in &mut logits.data {
                *v = (*v / 2.0).round();
            }
        }
        let e = self.experts;
        let identity = HostTensor {
            shape: vec![e * e, 1],
            data: (0..e * e)
                .map(|i| if i / e == i % e { 1.0 } else { 0.0 })
                .collect(),
            dtype: None,
        };
        let one = HostTensor {
            shape: vec![self.tokens, 1],
            data: vec![1.0; self.tokens],
            dtype: None,
        };
        Ok(vec![logits, identity, one])
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.tokens * self.top_k, self.experts]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let (ids, weights) =
            moe::reference_route(&inputs[0].data, self.experts, self.top_k, self.renormalize);
        let mut out = vec![0.0; ids.len() * self.experts];
        for (p, (id, w)) in ids.iter().zip(&weights).enumerate() {
            out[p * self.experts + id] = *w;
        }
        out
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let ids = Tensor::empty(gpu, &[self.tokens, self.top_k], DType::U32)?;
        let weights = Tensor::empty(gpu, &[self.tokens, self.top_k], DType::F32)?;
        let route = moe::route(
            gpu,
            &inputs[0],
            self.top_k,
            self.renormalize,
            &ids,
            &weights,
        )?;
        let expand = moe::expert_gemv(
            gpu,
            &inputs[1],
            self.experts,
            &ids,
            &inputs[2],
            self.top_k,
            Some(&weights),
            Epilogue::None,
            out,
        )?;
        Ok(route.detach().then(expand.detach()).owning([ids, weights]))
    }
}

/// The expert GEMV: `tokens · top_k` pairs, each against its expert's `[n, k]` rows of
/// `experts` stacked, reading its token's row of x (`per_token`) or its own, optionally
/// weighted and with an epilogue; with `grouped`, the prompt's path: the pairs grouped by
/// expert, then one tiled matmul per expert.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoeGemvSpec {
    pub experts: usize,
    pub tokens: usize,
    pub top_k: usize,
    pub n: usize,
    pub k: usize,
    pub per_token: bool,
    pub weighted: bool,
    pub epilogue: EpilogueKind,
    pub grouped: bool,
}

impl MoeGemvSpec {
    fn pairs(&self) -> usize {
        self.tokens * self.top_k
    }
    fn x_div(&self) -> usize {
        if self.per_token { self.top_k } else { 1 }
    }
}

impl CaseSpec for MoeGemvSpec {
    fn kernel(&self) -> &'static str {
        if self.grouped {
            "moe_matmul"
        } else {
            "moe_gemv"
        }
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "E={} pairs={}x{} N={} K={}",
            self.experts, self.tokens, self.top_k, self.n, self.k
        );
        if self.per_token {
            s += " x/token";
        }
        if self.weighted {
            s += " weighted";
        }
        s += epilogue_suffix(self.epilogue);
        s
    }

    fn flops(&self) -> f64 {
        2.0 * crate::kernels::product_f64(&[self.pairs(), self.n, self.k])
    }

    /// x, y and the weights: each pair's expert's rows for the GEMV; for the grouped matmul
    /// every expert's once (a lower bound: it reads them once per 64 of their pairs).
    fn traffic(&self) -> usize {
        let weights = if self.grouped {
            self.experts * self.n * self.k
        } else {
            self.pairs() * self.n * self.k
        };
        weights + self.pairs() * (self.k + self.n)
    }

    fn compute_tolerance(&self) -> Tolerance {
        let product = 4.0 * DType::F32.epsilon() * self.k as f64;
        Tolerance {
            atol: product,
            rtol: 4e-6,
        }
    }

    /// Stacked weights, ids (u32; a token's k experts distinct, as routing gives them:
    /// a random first one and the next k - 1 after it), x, the weights (f32) and the
    /// epilogue's operand.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let w = random(&[self.experts * self.n, self.k], -1.0, 1.0);
        let ids = routed_ids(self.tokens, self.top_k, self.experts, random);
        let x = random(&[self.pairs() / self.x_div(), self.k], -1.0, 1.0);
        let mut weights = random(&[self.pairs()], 0.0, 1.0);
        weights.dtype = Some(DType::F32);
        let other = random(&[self.pairs(), self.n], -4.0, 4.0);
        Ok(vec![w, ids, x, weights, other])
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.pairs(), self.n]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let (w, ids, x, weights, other) = (
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
            &inputs[3].data,
            &inputs[4].data,
        );
        let shape = (self.n, self.k, self.x_div());
        let weights = self.weighted.then_some(weights.as_slice());
        expert_reference(w, ids, x, shape, weights, self.epilogue, other)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let weights = self.weighted.then(|| &inputs[3]);
        let epilogue = Epilogue::new(self.epilogue, &inputs[4]);
        if self.grouped {
            let order = Tensor::empty(gpu, &[self.pairs()], DType::U32)?;
            let offsets = Tensor::empty(gpu, &[self.experts + 1], DType::U32)?;
            let group = moe::group(gpu, &inputs[1], self.experts, &order, &offsets)?.detach();
            let matmul = moe::expert_matmul(
                gpu,
                &inputs[0],
                self.experts,
                (&order, &offsets),
                self.tokens,
                &inputs[2],
                self.x_div(),
                weights,
                epilogue,
                out,
            )?
            .detach();
            return Ok(group.then(matmul).owning([order, offsets]));
        }
        moe::expert_gemv(
            gpu,
            &inputs[0],
            self.experts,
            &inputs[1],
            &inputs[2],
            self.x_div(),
            weights,
            epilogue,
            out,
        )
    }
}

/// Ids of `tokens · top_k` pairs as routing gives them: a token's experts distinct (a
/// random first one and the next `top_k - 1` after it, modulo `experts`).
pub(super) fn routed_ids(
    tokens: usize,
    top_k: usize,
    experts: usize,
    random: Random<'_>,
) -> HostTensor {
    let draws = random(&[tokens], 0.0, experts as f64);
    HostTensor {
        shape: vec![tokens * top_k],
        data: (0..tokens * top_k)
            .map(|p| {
                let first = draws.data[p / top_k].floor() as usize;
                ((first + p % top_k) % experts) as f64
            })
            .collect(),
        dtype: Some(DType::U32),
    }
}

/// f64 reference of an expert product: per pair p, `W_{ids[p]} · x[p / x_div]` (`W` the
/// experts' `(n, k)` matrices stacked, row-major), times `weights[p]` where given, then
/// `epilogue` with `other[p, ·]`.
pub(super) fn expert_reference(
    w: &[f64],
    ids: &[f64],
    x: &[f64],
    (n, k, x_div): (usize, usize, usize),
    weights: Option<&[f64]>,
    epilogue: EpilogueKind,
    other: &[f64],
) -> Vec<f64> {
    let mut out = Vec::with_capacity(ids.len() * n);
    for (p, &e) in ids.iter().enumerate() {
        let xr = &x[(p / x_div) * k..][..k];
        for row in 0..n {
            let wr = &w[(e as usize * n + row) * k..][..k];
            let mut v: f64 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
            if let Some(weights) = weights {
                v *= weights[p];
            }
            out.push(epilogue.reference(v, other[p * n + row]));
        }
    }
    out
}
