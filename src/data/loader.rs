//! A seeded mini-batch loader. The order of epoch `e` depends only on `(seed, e)`, so a run resumed at epoch `e`
//! sees the same batches as one that never stopped. The permutation is drawn on the host (ChaCha8, stream = epoch)
//! and moved to the data's device as one int64 index tensor; the last partial batch is kept (Keras semantics).
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use super::Dataset;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Loader {
    xs: Tensor,
    ys: Tensor,
    n: usize,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    /// This process's shard of a distributed run: (rank, world size, padded).
    shard: Option<(usize, usize, bool)>,
}

impl Loader {
    /// A loader over `xs` and `ys` (same first dimension, on the same device). Infallible for callers whose
    /// data is already checked (a `Dataset` guarantees matching lengths; the config rejects batch size 0): a batch
    /// size of 0 counts as 1, and mismatched lengths use the shorter. `try_new` reports both instead.
    pub fn new(xs: &Tensor, ys: &Tensor, batch_size: usize, shuffle: bool, seed: u64) -> Self {
        let rows = |t: &Tensor| t.size().first().copied().unwrap_or(0).max(0) as usize;
        let n = rows(xs).min(rows(ys));
        Loader {
            xs: xs.shallow_clone(),
            ys: ys.shallow_clone(),
            n,
            batch_size: batch_size.max(1),
            shuffle,
            seed,
            shard: None,
        }
    }

    /// This loader restricted to the shard of `rank` among `world` processes, as PyTorch's `DistributedSampler`:
    /// every rank draws the same seeded permutation of the whole set and takes every `world`-th sample from its
    /// rank on. With `pad` (training) the permutation is first extended by its own start to a multiple of `world`,
    /// so every rank has the same number of samples and batches; without it (evaluation) each sample is seen
    /// once over all ranks.
    pub fn shard(mut self, rank: usize, world: usize, pad: bool) -> Self {
        if world > 1 {
            self.shard = Some((rank, world, pad));
        }
        self
    }

    /// The number of samples this loader yields an epoch (its shard's, when sharded).
    fn yielded(&self) -> usize {
        match self.shard {
            None => self.n,
            Some((_, world, true)) => self.n.div_ceil(world),
            Some((rank, world, false)) => (self.n + world - 1).saturating_sub(rank) / world,
        }
    }

    /// As `new`, but fails on an empty set, mismatched lengths or a batch size of 0.
    pub fn try_new(xs: &Tensor, ys: &Tensor, batch_size: usize, shuffle: bool, seed: u64) -> Result<Self> {
        let n = xs.size().first().copied().unwrap_or(0);
        if n <= 0 {
            return Err(Error::invalid("the loader got 0 samples; the dataset (or its split) is empty"));
        }
        if ys.size().first().copied() != Some(n) {
            return Err(Error::invalid(format!("the loader got {n} inputs but targets of shape {:?}", ys.size())));
        }
        if batch_size == 0 {
            return Err(Error::config("batch size 0; use a batch size of at least 1, e.g. 32"));
        }
        Ok(Loader::new(xs, ys, batch_size, shuffle, seed))
    }

    /// A loader over a dataset's features and targets.
    pub fn from_dataset(data: &Dataset, batch_size: usize, shuffle: bool, seed: u64) -> Result<Self> {
        Loader::try_new(&data.xs, &data.ys, batch_size, shuffle, seed)
    }

    /// The number of batches per epoch (the last may be partial).
    pub fn len(&self) -> usize {
        self.yielded().div_ceil(self.batch_size)
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn n_samples(&self) -> usize {
        self.n
    }
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// Whether epochs are shuffled.
    pub fn shuffles(&self) -> bool {
        self.shuffle
    }
    /// This process's (rank, world size, padded), when sharded.
    pub fn sharding(&self) -> Option<(usize, usize, bool)> {
        self.shard
    }

    /// The sample order of `epoch`: a permutation seeded by (seed, epoch) when shuffling, else 0..n; when
    /// sharded, this rank's part of it.
    pub fn order(&self, epoch: usize) -> Vec<i64> {
        let mut order: Vec<i64> = (0..self.n as i64).collect();
        if self.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(epoch as u64);
            order.shuffle(&mut rng);
        }
        match self.shard {
            None => order,
            Some((rank, world, pad)) => {
                if pad && !order.is_empty() {
                    let total = self.n.div_ceil(world) * world;
                    let mut i = 0;
                    while order.len() < total {
                        order.push(order[i % self.n]);
                        i += 1;
                    }
                }
                order.into_iter().skip(rank).step_by(world).collect()
            }
        }
    }

    /// The batches of `epoch`, in order, as `(xs, ys)` pairs.
    pub fn batches(&self, epoch: usize) -> Batches<'_> {
        let index = (self.shuffle || self.shard.is_some())
            .then(|| Tensor::from_slice(&self.order(epoch)).to_device(self.xs.device()));
        Batches { loader: self, index, next: 0, end: self.yielded() }
    }
}

/// The iterator `Loader::batches` returns.
pub struct Batches<'a> {
    loader: &'a Loader,
    /// The epoch's permutation on the data's device; `None` when not shuffling (batches are then views).
    index: Option<Tensor>,
    next: usize,
    /// The number of samples this epoch yields.
    end: usize,
}

impl Iterator for Batches<'_> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<Self::Item> {
        let l = self.loader;
        if self.next >= self.end {
            return None;
        }
        let start = self.next as i64;
        let len = l.batch_size.min(self.end - self.next) as i64;
        self.next += len as usize;
        Some(match &self.index {
            Some(index) => {
                let idx = index.narrow(0, start, len);
                (l.xs.index_select(0, &idx), l.ys.index_select(0, &idx))
            }
            None => (l.xs.narrow(0, start, len), l.ys.narrow(0, start, len)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next.min(self.end)).div_ceil(self.loader.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}
