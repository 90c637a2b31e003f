//! Case specifications for the paged KV cache: attention through block tables and the row
//! write into the pool.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::KernelCall;
use crate::kernels::attention::Scores;
use crate::kernels::paged_kv::{self, PagedDims};
use crate::tensor::{DType, Tensor};

/// Paged attention: sequences of `(keys, query rows)`, the query rows being each sequence's
/// last positions (1 for a decode row, more for a prompt chunk), their blocks scattered over a
/// pool with spare blocks that no table names.
#[derive(Clone, Debug, PartialEq)]
pub struct PagedAttentionSpec {
    pub seqs: Vec<(usize, usize)>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub softcap: Option<f32>,
    pub window: Option<usize>,
}

/// Unused blocks in a case's pool (their random contents must not leak into any row).
const SPARE_BLOCKS: usize = 3;

impl PagedAttentionSpec {
    fn rows(&self) -> usize {
        self.seqs.iter().map(|s| s.1).sum()
    }

    fn pool_blocks(&self) -> usize {
        self.seqs
            .iter()
            .map(|s| s.0.div_ceil(self.block_size))
            .sum::<usize>()
            + SPARE_BLOCKS
    }

    fn dims(&self) -> PagedDims {
        PagedDims {
            rows: self.rows(),
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            pool_rows: self.pool_blocks() * self.block_size,
            block_size: self.block_size,
        }
    }

    /// The block tables, concatenated, and each query row's (table start, position): blocks
    /// handed out round-robin over the sequences from the top of the pool down, so that
    /// neighbouring blocks of a sequence are never neighbours in the pool.
    fn layout(&self) -> (Vec<usize>, Vec<(usize, usize)>) {
        let need: Vec<usize> = self
            .seqs
            .iter()
            .map(|s| s.0.div_ceil(self.block_size))
            .collect();
        let mut tables: Vec<Vec<usize>> = vec![Vec::new(); self.seqs.len()];
        let mut next = self.pool_blocks();
        for b in 0..need.iter().copied().max().unwrap_or(0) {
            for (s, &n) in need.iter().enumerate() {
                if b < n {
                    next -= 1;
                    tables[s].push(next);
                }
            }
        }
        let mut table = Vec::new();
        let mut rows = Vec::new();
        for (s, &(keys, queries)) in self.seqs.iter().enumerate() {
            let first = table.len();
            table.extend(&tables[s]);
            rows.extend((keys - queries..keys).map(|position| (first, position)));
        }
        (table, rows)
    }

    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

fn words(shape: Vec<usize>, values: impl IntoIterator<Item = usize>) -> HostTensor {
    HostTensor {
        shape,
        data: values.into_iter().map(|v| v as f64).collect(),
        dtype: Some(DType::U32),
    }
}

impl CaseSpec for PagedAttentionSpec {
    fn kernel(&self) -> &'static str {
        "paged_attn"
    }

    fn shape(&self) -> String {
        // Runs of equal sequences written once with their count ("1024x16").
        let mut seqs: Vec<String> = Vec::new();
        let mut at = 0;
        while at < self.seqs.len() {
            let (k, q) = self.seqs[at];
            let run = self.seqs[at..].iter().take_while(|&&s| s == (k, q)).count();
            let mut item = if q == 1 {
                format!("{k}")
            } else {
                format!("{k}/{q}")
            };
            if run > 2 {
                item += &format!("x{run}");
                at += run;
            } else {
                at += 1;
            }
            seqs.push(item);
        }
        let mut s = format!(
            "seqs={} h={}/{} d={} block={}",
            seqs.join(","),
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.block_size
        );
        if let Some(c) = self.softcap {
            s += &format!(" softcap={c}");
        }
        if let Some(w) = self.window {
            s += &format!(" window={w}");
        }
        s
    }

    fn traffic(&self) -> usize {
        let q = self.rows() * self.n_heads * self.head_dim;
        let kv: usize = self.seqs.iter().map(|s| s.0).sum::<usize>() * self.n_kv_heads;
        2 * q + 2 * kv * self.head_dim
    }

    /// As the other attention kernels: softmax weights over O(1) scores, |v| ≤ 1.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 2e-6,
        }
    }

    /// q, the key and value pools, row_info, the table.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let d = self.dims();
        let (table, rows) = self.layout();
        let pool = [d.pool_rows, self.n_kv_heads, self.head_dim];
        Ok(vec![
            random(&[d.rows, self.n_heads, self.head_dim], -1.5, 1.5),
            random(&pool, -1.5, 1.5),
            random(&pool, -1.0, 1.0),
            words(vec![d.rows, 2], rows.iter().flat_map(|&(f, p)| [f, p])),
            words(vec![table.len()], table),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let (table, rows) = self.layout();
        paged_kv::reference(
            &self.dims(),
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
            &rows,
            &table,
            self.scale(),
            self.softcap.map(f64::from),
            self.window,
        )
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let scores = Scores {
            scale: self.scale() as f32,
            softcap: self.softcap,
            window: self.window,
        };
        let [q, k, v, rows, table] = [0, 1, 2, 3, 4].map(|i| &inputs[i]);
        paged_kv::attention(gpu, q, k, v, rows, table, self.block_size, scores, out)
    }
}

/// The paged row write: `rows` new rows written to scattered slots of a pool of `pool_rows`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PagedWriteSpec {
    pub rows: usize,
    pub pool_rows: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl PagedWriteSpec {
    /// Distinct pool rows, spread over the pool and out of order.
    fn slots(&self) -> Vec<usize> {
        let stride = (1..self.pool_rows)
            .rev()
            .find(|s| gcd(*s, self.pool_rows) == 1)
            .unwrap_or(1);
        (0..self.rows)
            .map(|r| (r * stride + 1) % self.pool_rows)
            .collect()
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl CaseSpec for PagedWriteSpec {
    fn kernel(&self) -> &'static str {
        "paged_kv_write"
    }

    fn shape(&self) -> String {
        format!(
            "rows={} pool={} h={} d={}",
            self.rows, self.pool_rows, self.n_kv_heads, self.head_dim
        )
    }

    fn traffic(&self) -> usize {
        2 * self.rows * self.n_kv_heads * self.head_dim
    }

    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 0.0,
            rtol: 0.0,
        }
    }

    fn exact(&self) -> bool {
        true
    }

    fn in_place(&self) -> bool {
        true
    }

    /// The old pool (written over in place), the new rows, the slots.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let (h, d) = (self.n_kv_heads, self.head_dim);
        Ok(vec![
            random(&[self.pool_rows, h, d], -1.0, 1.0),
            random(&[self.rows, h, d], 2.0, 3.0),
            words(vec![self.rows], self.slots()),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let mut pool = inputs[0].data.clone();
        let row = self.n_kv_heads * self.head_dim;
        for (new, slot) in inputs[1].data.chunks_exact(row).zip(self.slots()) {
            pool[slot * row..(slot + 1) * row].copy_from_slice(new);
        }
        pool
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        paged_kv::write_rows(gpu, &inputs[1], &inputs[2], out)
    }
}
