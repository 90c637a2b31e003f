//! Many sequences in one forward pass over a paged KV cache: each step runs the rows of
//! every sequence it is given (one decode token, or a chunk of a prompt) through one plan,
//! so the projections are one matmul over all rows, and attention reads each row's own
//! sequence through its block table ([`crate::kernels::paged_kv`]).

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::graph::Plan;
use crate::models::kv_blocks::{BlockAllocator, SeqId};
use crate::tensor::Tensor;

use super::Llama;
use super::model::{KvSource, Logits, PagedPools, StepIo};

/// Positions per block when the caller does not say.
pub const DEFAULT_BLOCK_SIZE: usize = 16;
/// Plans kept for reuse (one per rows × logit rows seen lately).
const PLANS_KEPT: usize = 16;

/// The size of a paged cache.
#[derive(Clone, Copy, Debug)]
pub struct PagedOptions {
    pub block_size: usize,
    /// Blocks in the pool; default: room for four sequences of the model's full context.
    pub blocks: Option<usize>,
}

impl Default for PagedOptions {
    fn default() -> Self {
        PagedOptions {
            block_size: DEFAULT_BLOCK_SIZE,
            blocks: None,
        }
    }
}

/// A paged KV cache for one model: per-layer key and value pools, the block allocator, and
/// the compiled step plans.
pub struct PagedCache {
    pools: PagedPools,
    blocks: BlockAllocator,
    /// Most recently used last.
    plans: Vec<((usize, usize), StepPlan)>,
}

/// A step plan and its inputs, for a number of rows and of logit rows.
struct StepPlan {
    ids: Tensor,
    positions: Tensor,
    slots: Tensor,
    row_info: Tensor,
    table: Tensor,
    logit_rows: Tensor,
    logits: Logits,
    plan: Plan,
}

impl PagedCache {
    pub fn blocks(&self) -> &BlockAllocator {
        &self.blocks
    }

    /// Positions `seq` holds.
    pub fn len(&self, seq: SeqId) -> usize {
        self.blocks.len(seq)
    }

    /// Frees `seq`'s blocks.
    pub fn release(&mut self, seq: SeqId) {
        self.blocks.release(seq);
    }

    /// Forgets `seq`'s positions from `len` on.
    pub fn truncate(&mut self, seq: SeqId, len: usize) {
        self.blocks.truncate(seq, len);
    }

    /// Bytes of the key and value pools.
    pub fn bytes(&self) -> u64 {
        self.pools
            .k
            .iter()
            .chain(&self.pools.v)
            .map(Tensor::bytes)
            .sum()
    }
}

/// Tokens of one sequence for a batched step, after the positions it already holds.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'t> {
    pub seq: SeqId,
    pub tokens: &'t [u32],
    /// Whether the step returns the logits after the chunk's last token.
    pub logits: bool,
}

impl Llama {
    /// A paged KV cache for this model.
    pub fn paged_cache(&self, options: PagedOptions) -> Result<PagedCache> {
        let c = self.config();
        let bs = options.block_size;
        if bs == 0 {
            return Err(Error::Invalid(
                "a KV block needs at least one position".into(),
            ));
        }
        let row_bytes = c.num_kv_heads * c.head_dim * self.dtype.size();
        let binding = self.gpu.limits().max_storage_buffer_binding_size as usize;
        let fits = binding / (row_bytes * bs);
        let blocks = match options.blocks {
            Some(n) if n > fits => {
                return Err(Error::TooLarge {
                    what: format!("a KV pool of {n} blocks of {bs} positions"),
                    bytes: (n * bs * row_bytes) as u64,
                    limit_name: "max_storage_buffer_binding_size",
                    limit: binding as u64,
                });
            }
            Some(n) => n,
            None => (4 * self.capacity().div_ceil(bs)).min(fits),
        };
        let blocks = BlockAllocator::new(blocks, bs)?;
        let shape = [blocks.blocks() * bs, c.num_kv_heads, c.head_dim];
        let pool = || Tensor::empty(&self.gpu, &shape, self.dtype);
        let pools = PagedPools {
            k: (0..c.num_layers).map(|_| pool()).collect::<Result<_>>()?,
            v: (0..c.num_layers).map(|_| pool()).collect::<Result<_>>()?,
            block_size: bs,
        };
        Ok(PagedCache {
            pools,
            blocks,
            plans: Vec::new(),
        })
    }

    /// Runs every chunk (each a different sequence) in one forward pass over `cache` and
    /// returns the logits after the last token of each chunk that asks for them, in order.
    /// The blocks the chunks need are taken all or none: `Err` when the pool is too full
    /// (nothing changes then).
    pub fn forward_batch(
        &self,
        cache: &mut PagedCache,
        chunks: &[Chunk<'_>],
    ) -> Result<Vec<Vec<f32>>> {
        let rows: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        if chunks.is_empty() || chunks.iter().any(|c| c.tokens.is_empty()) {
            return Err(Error::Invalid(
                "a batched step needs at least one token per sequence".into(),
            ));
        }
        let mut seen = HashSet::new();
        if let Some(c) = chunks.iter().find(|c| !seen.insert(c.seq)) {
            return Err(Error::Invalid(format!(
                "sequence {} appears twice in one step",
                c.seq
            )));
        }
        for c in chunks {
            self.check_tokens(c.tokens)?;
            let end = cache.len(c.seq) + c.tokens.len();
            if end > self.capacity() {
                return Err(Error::Invalid(format!(
                    "sequence {} would hold {end} positions, past the context of {}",
                    c.seq,
                    self.capacity()
                )));
            }
        }
        let short: usize = chunks
            .iter()
            .map(|c| {
                let end = cache.len(c.seq) + c.tokens.len();
                cache.blocks.blocks_short(c.seq, end)
            })
            .sum();
        if short > cache.blocks.free_blocks() {
            return Err(Error::Invalid(format!(
                "the KV cache has {} free blocks; this step needs {short}",
                cache.blocks.free_blocks()
            )));
        }
        for c in chunks {
            let end = cache.len(c.seq) + c.tokens.len();
            cache.blocks.reserve(c.seq, end)?;
        }

        // The step's inputs.
        let (mut ids, mut positions, mut slots, mut row_info) = (vec![], vec![], vec![], vec![]);
        let (mut table, mut logit_rows) = (vec![], vec![]);
        for c in chunks {
            let first = table.len() as u32;
            table.extend_from_slice(cache.blocks.table(c.seq));
            let start = cache.len(c.seq);
            for (i, &token) in c.tokens.iter().enumerate() {
                let position = start + i;
                ids.push(token);
                positions.push(position as u32);
                slots.push(cache.blocks.slot(c.seq, position).expect("reserved above"));
                row_info.extend([first, position as u32]);
            }
            if c.logits {
                logit_rows.push((ids.len() - 1) as u32);
            }
        }
        let key = (rows, logit_rows.len().max(1));
        if logit_rows.is_empty() {
            // A step of prompt chunks only: the plan still projects one row.
            logit_rows.push(0);
        }
        let at = match cache.plans.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                let plan = self.step_plan(&cache.pools, cache.blocks.blocks(), key)?;
                if cache.plans.len() == PLANS_KEPT {
                    cache.plans.remove(0);
                }
                cache.plans.push((key, plan));
                cache.plans.len() - 1
            }
        };
        let entry = cache.plans.remove(at);
        let step = &entry.1;
        table.resize(step.table.len(), 0);
        let run = (|| {
            step.ids.write_u32(&ids)?;
            step.positions.write_u32(&positions)?;
            step.slots.write_u32(&slots)?;
            step.row_info.write_u32(&row_info)?;
            step.table.write_u32(&table)?;
            step.logit_rows.write_u32(&logit_rows)?;
            step.plan.run(0)?;
            step.logits.read()
        })();
        cache.plans.push(entry);
        let logits = run?;
        for c in chunks {
            let end = cache.len(c.seq) + c.tokens.len();
            cache.blocks.set_len(c.seq, end)?;
        }
        Ok(if chunks.iter().any(|c| c.logits) {
            logits
        } else {
            Vec::new()
        })
    }

    /// A step plan for `rows` rows and `kept` logit rows over a pool of `blocks` blocks.
    fn step_plan(
        &self,
        pools: &PagedPools,
        blocks: usize,
        (rows, kept): (usize, usize),
    ) -> Result<StepPlan> {
        let u32s = |n: usize| Tensor::from_u32(&self.gpu, &[n], &vec![0; n]);
        let (ids, positions, slots) = (u32s(rows)?, u32s(rows)?, u32s(rows)?);
        let row_info = Tensor::from_u32(&self.gpu, &[rows, 2], &vec![0; 2 * rows])?;
        let table = u32s(blocks)?;
        let logit_rows = u32s(kept)?;
        let logits = Logits::new(&self.gpu, self.output(), kept, self.dtype)?;
        let plan = self.plan(&StepIo {
            ids: &ids,
            rows,
            kv: KvSource::Paged {
                pools,
                positions: &positions,
                slots: &slots,
                row_info: &row_info,
                table: &table,
            },
            logit_rows: &logit_rows,
            logits: &logits,
        })?;
        Ok(StepPlan {
            ids,
            positions,
            slots,
            row_info,
            table,
            logit_rows,
            logits,
            plan,
        })
    }
}
