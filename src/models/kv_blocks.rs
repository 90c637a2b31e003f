//! The host's bookkeeping of a paged KV cache: which fixed-size blocks of the pool belong to
//! which sequence, in order (its block table), and how many positions each holds. Blocks come
//! from one free list, so sequences of any length share the pool, and a finished sequence's
//! blocks are free again at once. Nothing here touches the GPU.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// A sequence of a batch, as the caller numbers it.
pub type SeqId = u64;

/// Blocks of a pool and the sequences holding them.
#[derive(Debug)]
pub struct BlockAllocator {
    block_size: usize,
    blocks: usize,
    /// Free block ids; the most recently freed is handed out first.
    free: Vec<u32>,
    seqs: HashMap<SeqId, SeqBlocks>,
}

#[derive(Debug, Default)]
struct SeqBlocks {
    table: Vec<u32>,
    /// Positions written.
    len: usize,
}

impl BlockAllocator {
    /// A pool of `blocks` blocks of `block_size` positions, all free.
    pub fn new(blocks: usize, block_size: usize) -> Result<BlockAllocator> {
        if blocks == 0 || block_size == 0 || u32::try_from(blocks).is_err() {
            return Err(Error::Invalid(format!(
                "a paged KV cache needs at least one block of at least one position \
                 ({blocks} blocks of {block_size})"
            )));
        }
        Ok(BlockAllocator {
            block_size,
            blocks,
            free: (0..blocks as u32).rev().collect(),
            seqs: HashMap::new(),
        })
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the pool.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks that hold `positions` positions.
    pub fn blocks_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.block_size)
    }

    /// Positions `seq` holds (0 for a sequence the pool does not know).
    pub fn len(&self, seq: SeqId) -> usize {
        self.seqs.get(&seq).map_or(0, |s| s.len)
    }

    /// Sequences holding blocks.
    pub fn sequences(&self) -> usize {
        self.seqs.len()
    }

    /// More blocks `seq` needs to hold `positions` positions.
    pub fn blocks_short(&self, seq: SeqId, positions: usize) -> usize {
        let held = self.seqs.get(&seq).map_or(0, |s| s.table.len());
        self.blocks_for(positions).saturating_sub(held)
    }

    /// Gives `seq` the blocks it needs to hold `positions` positions, all or none: `Err`
    /// when the pool has too few free blocks (nothing is taken then).
    pub fn reserve(&mut self, seq: SeqId, positions: usize) -> Result<()> {
        let short = self.blocks_short(seq, positions);
        if short > self.free.len() {
            return Err(Error::Invalid(format!(
                "the KV cache has {} free blocks of {} positions; sequence {seq} needs {short} \
                 more to hold {positions} positions",
                self.free.len(),
                self.block_size
            )));
        }
        let at = self.free.len() - short;
        let taken = self.free.split_off(at);
        self.seqs
            .entry(seq)
            .or_default()
            .table
            .extend(taken.into_iter().rev());
        Ok(())
    }

    /// Records that `seq` now holds `len` positions (within its blocks).
    pub fn set_len(&mut self, seq: SeqId, len: usize) -> Result<()> {
        let held = self.seqs.get(&seq).map_or(0, |s| s.table.len());
        match self.seqs.get_mut(&seq) {
            Some(s) if len <= held * self.block_size => {
                s.len = len;
                Ok(())
            }
            _ => Err(Error::Invalid(format!(
                "sequence {seq} holds {held} blocks, too few for {len} positions"
            ))),
        }
    }

    /// Forgets the positions of `seq` from `len` on, freeing the blocks no longer needed.
    pub fn truncate(&mut self, seq: SeqId, len: usize) {
        let keep = self.blocks_for(len);
        if let Some(s) = self.seqs.get_mut(&seq) {
            s.len = s.len.min(len);
            while s.table.len() > keep {
                self.free.push(s.table.pop().expect("longer than keep"));
            }
        }
    }

    /// Frees every block of `seq` and forgets it.
    pub fn release(&mut self, seq: SeqId) {
        if let Some(s) = self.seqs.remove(&seq) {
            self.free.extend(s.table.into_iter().rev());
        }
    }

    /// `seq`'s block table: its blocks in position order.
    pub fn table(&self, seq: SeqId) -> &[u32] {
        self.seqs.get(&seq).map_or(&[], |s| &s.table)
    }

    /// The pool row of `seq`'s position `position` (inside its blocks).
    pub fn slot(&self, seq: SeqId, position: usize) -> Option<u32> {
        let block = *self.table(seq).get(position / self.block_size)?;
        let row = block as usize * self.block_size + position % self.block_size;
        u32::try_from(row).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_shared_reserved_all_or_nothing_and_freed_at_once() {
        let mut a = BlockAllocator::new(4, 16).unwrap();
        a.reserve(1, 17).unwrap(); // 2 blocks
        a.reserve(2, 16).unwrap(); // 1 block
        assert_eq!(a.free_blocks(), 1);
        // Two more blocks for sequence 2 do not exist: nothing is taken.
        assert!(a.reserve(2, 48).is_err());
        assert_eq!((a.free_blocks(), a.table(2).len()), (1, 1));
        let (t1, t2) = (a.table(1).to_vec(), a.table(2).to_vec());
        assert!(t1.iter().all(|b| !t2.contains(b)), "{t1:?} {t2:?}");
        assert_eq!(a.slot(1, 17), Some(t1[1] * 16 + 1));
        assert_eq!(a.slot(1, 32), None);
        a.release(1);
        assert_eq!(a.free_blocks(), 3);
        a.reserve(3, 48).unwrap();
        assert_eq!(a.free_blocks(), 0);
        a.truncate(3, 1);
        assert_eq!((a.free_blocks(), a.table(3).len()), (2, 1));
        assert!(a.set_len(3, 17).is_err());
        a.set_len(3, 16).unwrap();
        assert_eq!(a.len(3), 16);
    }
}
