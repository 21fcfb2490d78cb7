//! The input pipeline for data that is not held in memory (DESIGN.md, "The input pipeline"): the sampler is the
//! seeded `Loader`'s order of an epoch (and a rank's shard of it); Rust worker threads take batch numbers, decode
//! and transform each sample with a generator keyed by (seed, epoch, sample index) and send the finished uint8
//! NCHW batch back; at most `prefetch` batches are in flight; the consumer puts them back in batch order and
//! normalises them, batched, on the device. Neither the worker count nor timing changes what the model sees.
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use super::folder::{self, ImageIndex};
use super::transforms::Transforms;
use super::{Dataset, Loader, Task};
use crate::error::{Error, Result};

/// How the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Decoding threads (at least 1).
    pub workers: usize,
    /// Batches in flight per worker (PyTorch's `prefetch_factor`).
    pub prefetch: usize,
    /// Skip (and count) an image that fails to decode, instead of ending the run.
    pub skip_bad: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig { workers: default_workers(), prefetch: 2, skip_bad: false }
    }
}

/// The number of cores.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A set of images read lazily: its samples' positions in a shared index, and how to turn each into a tensor.
#[derive(Debug)]
pub struct ImageSet {
    pub index: Arc<ImageIndex>,
    /// Index positions of this set's samples, in the set's order.
    pub samples: Vec<u32>,
    pub transforms: Transforms,
    /// Random training transforms (else the evaluation transform).
    pub train: bool,
    pub workers: WorkerConfig,
    /// Seeds the per-sample generators.
    pub seed: u64,
    /// Images skipped because they did not decode (with `skip_bad`), over the run.
    pub skipped: AtomicUsize,
    /// WebDataset tar shards streamed in order (then `index` holds only the class names and `samples` is empty).
    pub shards: Option<Arc<super::shards::ShardSource>>,
}

impl ImageSet {
    /// The shape of one transformed sample.
    pub fn sample_shape(&self) -> Vec<i64> {
        let side = if self.train { self.transforms.train_crop_size } else { self.transforms.val_crop_size } as i64;
        vec![self.transforms.channels as i64, side, side]
    }

    /// Sample `k` of this set, decoded and transformed for `epoch`, with the box `--random-erase` drew for it
    /// (erased after normalisation).
    fn load(&self, k: usize, epoch: usize) -> Result<(Tensor, Option<super::transforms::CropBox>)> {
        let pos = self.samples[k] as usize;
        let path = &self.index.paths[pos];
        let bytes = folder::read_file(path)?;
        self.decode_transform(&bytes, &path.display().to_string(), epoch, pos)
    }

    /// An image file's bytes (named `name` in errors) of sample `key`, decoded and transformed for `epoch`
    /// (training: its random crop, flip and auto-augment, then the box `--random-erase` draws for it, from the
    /// sample's generator; evaluation: resize and crop), through the one decoder (`draft::decode_transform`).
    pub(crate) fn decode_transform(
        &self,
        bytes: &[u8],
        name: &str,
        epoch: usize,
        key: usize,
    ) -> Result<(Tensor, Option<super::transforms::CropBox>)> {
        if !self.train {
            let t = super::draft::decode_transform(bytes, name, &self.transforms, None::<&mut ChaCha8Rng>)?;
            return Ok((t, None));
        }
        let mut rng = super::transforms::sample_rng(self.seed, epoch, key);
        let t = super::draft::decode_transform(bytes, name, &self.transforms, Some(&mut rng))?;
        let p = self.transforms.random_erase;
        let side = self.transforms.train_crop_size as i64;
        let erase = (p > 0.0).then(|| super::erase::random_erasing_params(&mut rng, p, side, side)).flatten();
        Ok((t, erase))
    }
}

/// A lazy image folder as a dataset: the index, the labels as a tensor, a one-sample placeholder as `xs` (its
/// shape is the transformed sample's).
pub fn folder_dataset(
    dir: &Path,
    transforms: Transforms,
    train: bool,
    workers: WorkerConfig,
    seed: u64,
) -> Result<Dataset> {
    let index = Arc::new(folder::index(dir)?);
    let samples: Vec<u32> = (0..index.len() as u32).collect();
    let ys: Vec<i64> = index.labels.iter().map(|&l| l as i64).collect();
    let set = ImageSet { index, samples, transforms, train, workers, seed, skipped: AtomicUsize::new(0), shards: None };
    Ok(with_set(set, ys, &dir.display().to_string()))
}

/// The samples at positions `keep` of a lazy dataset `data` (labels as `data` has them), with the training or
/// the evaluation transform.
pub fn subset_of(data: &Dataset, set: &ImageSet, keep: &[usize], train: bool) -> Dataset {
    if set.shards.is_some() {
        return super::shards::with_transform(data, set, train);
    }
    let all: Vec<i64> = Vec::try_from(data.ys.to_device(Device::Cpu).to_kind(Kind::Int64)).unwrap_or_default();
    let ys = keep.iter().map(|&k| all[k]).collect();
    let samples = keep.iter().map(|&k| set.samples[k]).collect();
    let set = ImageSet {
        index: set.index.clone(),
        samples,
        transforms: set.transforms.clone(),
        train,
        workers: set.workers,
        seed: set.seed,
        skipped: AtomicUsize::new(0),
        shards: None,
    };
    let mut d = with_set(set, ys, &data.name);
    d.task = data.task;
    d.class_names = data.class_names.clone();
    d
}

pub(crate) fn with_set(set: ImageSet, ys: Vec<i64>, name: &str) -> Dataset {
    let class_names = set.index.class_names.clone();
    let mut shape = vec![1];
    shape.extend(set.sample_shape());
    Dataset {
        xs: Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu)),
        ys: Tensor::from_slice(&ys),
        task: Task::Classification { n_classes: class_names.len() },
        class_names: Some(class_names),
        name: name.to_string(),
        images: Some(Arc::new(set)),
    }
}

/// A lazy set with the evaluation transform (for `evaluate` on a run's training folder).
pub fn for_evaluation(data: &Dataset) -> Dataset {
    match &data.images {
        Some(set) => subset_of(data, set, &(0..data.len()).collect::<Vec<_>>(), false),
        None => data.slice(0, data.len()),
    }
}

/// The validation split of a lazy folder: per class, the seeded shuffle of its samples, of which the last
/// `fraction` (rounded) is held out; both parts keep index order. Returns (training, validation), the latter with
/// the evaluation transform.
pub fn split_stratified(data: &Dataset, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    let set = data.images.as_ref().ok_or_else(|| Error::invalid("split_stratified takes a lazy image set"))?;
    if set.shards.is_some() {
        return Err(Error::config(format!(
            "{}: tar shards are a stream and cannot be split for validation",
            data.name
        )));
    }
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::config(format!("validation split {fraction} is outside (0, 1); use e.g. 0.2")));
    }
    let labels: Vec<i64> = Vec::try_from(data.ys.to_device(Device::Cpu).to_kind(Kind::Int64)).unwrap_or_default();
    let mut by_class: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (k, &label) in labels.iter().enumerate() {
        by_class.entry(label).or_default().push(k);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (class, mut members) in by_class {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(class as u64);
        members.shuffle(&mut rng);
        let n_val = ((members.len() as f64) * fraction).round() as usize;
        val.extend_from_slice(&members[members.len() - n_val..]);
        train.extend_from_slice(&members[..members.len() - n_val]);
    }
    if train.is_empty() || val.is_empty() {
        return Err(Error::config(format!(
            "validation split {fraction} of {} images leaves an empty training or validation set",
            set.samples.len()
        )));
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((subset_of(data, set, &train, set.train), subset_of(data, set, &val, false)))
}

/// The batches of a dataset, whether in memory or read by workers.
pub enum DataLoader {
    Memory(Loader),
    Images { set: Arc<ImageSet>, sampler: Loader, labels: Arc<Vec<i64>>, device: Device },
}

impl DataLoader {
    /// Batches of `data` on its device (`Dataset::to_device` moved it): in memory, or decoded by workers and
    /// moved there.
    pub fn new(data: &Dataset, batch_size: usize, shuffle: bool, seed: u64) -> Self {
        match &data.images {
            None => DataLoader::Memory(Loader::new(&data.xs, &data.ys, batch_size, shuffle, seed)),
            Some(set) => {
                let labels: Vec<i64> =
                    Vec::try_from(data.ys.to_device(Device::Cpu).to_kind(Kind::Int64)).unwrap_or_default();
                let n = labels.len() as i64;
                let dummy = Tensor::zeros([n], (Kind::Int8, Device::Cpu));
                DataLoader::Images {
                    set: set.clone(),
                    sampler: Loader::new(&dummy, &dummy, batch_size, shuffle, seed),
                    labels: Arc::new(labels),
                    device: data.ys.device(),
                }
            }
        }
    }

    /// This rank's shard (see [`Loader::shard`]).
    pub fn shard(self, rank: usize, world: usize, pad: bool) -> Self {
        match self {
            DataLoader::Memory(l) => DataLoader::Memory(l.shard(rank, world, pad)),
            DataLoader::Images { set, sampler, labels, device } => {
                DataLoader::Images { set, sampler: sampler.shard(rank, world, pad), labels, device }
            }
        }
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        match self {
            DataLoader::Memory(l) => l.len(),
            DataLoader::Images { sampler, .. } => sampler.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batches of `epoch`, in order.
    pub fn epoch(&self, epoch: usize) -> EpochBatches<'_> {
        match self {
            DataLoader::Memory(l) => EpochBatches::Memory(l.batches(epoch)),
            DataLoader::Images { set, sampler, labels, device } if set.shards.is_some() => {
                EpochBatches::Images(Box::new(super::shards::stream(
                    set.clone(),
                    labels.clone(),
                    sampler.batch_size(),
                    sampler.shuffles() && set.train,
                    sampler.sharding(),
                    epoch,
                    *device,
                )))
            }
            DataLoader::Images { set, sampler, labels, device } => {
                let order: Vec<i64> = sampler.order(epoch);
                let bs = sampler.batch_size();
                let batches: Vec<Vec<usize>> =
                    order.chunks(bs).map(|c| c.iter().map(|&k| k as usize).collect()).collect();
                let in_step = matches!(sampler.sharding(), Some((_, world, true)) if world > 1);
                let stream = Stream::start(set.clone(), labels.clone(), batches, epoch, *device, in_step);
                EpochBatches::Images(Box::new(stream))
            }
        }
    }
}

/// One epoch's batches: `Ok((xs, ys))` on the data's device, or the error that ends the run.
pub enum EpochBatches<'a> {
    Memory(super::loader::Batches<'a>),
    Images(Box<Stream>),
}

impl EpochBatches<'_> {
    /// The time the consumer spent waiting for the workers so far.
    pub fn waited(&self) -> Duration {
        match self {
            EpochBatches::Memory(_) => Duration::ZERO,
            EpochBatches::Images(s) => s.waited,
        }
    }

    /// These batches with the images they skip said to `output` (silent otherwise).
    pub fn reporting(mut self, output: &crate::report::Output) -> Self {
        if let EpochBatches::Images(s) = &mut self {
            s.output = output.clone();
        }
        self
    }

    /// The images skipped this epoch, said once (see [`Stream::report_skipped`]).
    pub fn report_skipped(&mut self) {
        if let EpochBatches::Images(s) = self {
            s.report_skipped();
        }
    }
}

impl Iterator for EpochBatches<'_> {
    type Item = Result<(Tensor, Tensor)>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            EpochBatches::Memory(b) => b.next().map(|(xs, ys)| Ok((super::pixels_to_float(&xs), ys))),
            EpochBatches::Images(s) => s.next(),
        }
    }
}

pub(crate) struct Progress {
    /// The next batch number a worker takes.
    pub(crate) next_job: usize,
    /// The batch number the consumer waits for (all before it are consumed).
    pub(crate) consumed: usize,
    pub(crate) stop: bool,
}

pub(crate) struct Shared {
    state: Mutex<Progress>,
    pub(crate) cv: Condvar,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared { state: Mutex::new(Progress { next_job: 0, consumed: 0, stop: false }), cv: Condvar::new() }
    }
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A batch a worker made: uint8 images [B, C, H, W] on the CPU, labels, and the images it skipped.
pub(crate) struct Batch {
    xs: Tensor,
    ys: Tensor,
    /// `--random-erase`'s box of each image, erased after normalisation.
    erase: Vec<Option<super::transforms::CropBox>>,
    skipped: usize,
    first_skipped: Option<String>,
}

impl Batch {
    /// Stacks a batch's transformed images (all of `set`'s sample shape). With `in_step` (a distributed
    /// training batch) a batch none of whose images decoded is an error (see [`whole_batch_skipped`]).
    pub(crate) fn collate(
        set: &ImageSet,
        images: Vec<Tensor>,
        ys: Vec<i64>,
        erase: Vec<Option<super::transforms::CropBox>>,
        skipped: usize,
        first_skipped: Option<String>,
        in_step: bool,
    ) -> Result<Batch> {
        if in_step && images.is_empty() && skipped > 0 {
            return Err(whole_batch_skipped(skipped, first_skipped));
        }
        let ys = Tensor::from_slice(&ys);
        let xs = if images.is_empty() {
            let shape = set.sample_shape();
            Tensor::zeros([0, shape[0], shape[1], shape[2]], (Kind::Uint8, Device::Cpu))
        } else {
            Tensor::f_stack(&images, 0).map_err(|e| Error::invalid(format!("collating a batch: {e}")))?
        };
        Ok(Batch { xs, ys, erase, skipped, first_skipped })
    }
}

pub(crate) type Finished = (usize, Result<Batch>);

/// An epoch being decoded by the workers.
pub struct Stream {
    shared: Arc<Shared>,
    rx: Receiver<Finished>,
    pending: BTreeMap<usize, Result<Batch>>,
    next: usize,
    n_batches: usize,
    threads: Vec<JoinHandle<()>>,
    set: Arc<ImageSet>,
    device: Device,
    /// The time `next` spent waiting for a batch.
    pub waited: Duration,
    skipped_epoch: usize,
    first_skipped: Option<String>,
    /// Where the skipped images are said (see [`EpochBatches::reporting`]).
    output: crate::report::Output,
}

/// Worker threads are named so; a panic in one is reported as an error by the consumer, not printed.
pub(crate) const THREAD_NAME: &str = "tchzoo-data";

fn quiet_worker_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(THREAD_NAME) {
                previous(info);
            }
        }));
    });
}

pub(crate) fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

impl Stream {
    /// Says how many images of the epoch did not decode (`--skip-bad-images`), once; called when the batches run
    /// out, and through [`EpochBatches::report_skipped`] by a consumer that stops early (`--limit-train-batches`).
    pub fn report_skipped(&mut self) {
        if self.skipped_epoch > 0 {
            self.output.say(crate::report::Message::SkippedImages {
                count: std::mem::take(&mut self.skipped_epoch),
                first: self.first_skipped.take().unwrap_or_default(),
            });
        }
    }

    /// A stream over threads started elsewhere (the shard reader and its decoders), which send finished batches
    /// to `rx` and watch `shared`'s `stop`.
    pub(crate) fn from_parts(
        shared: Arc<Shared>,
        rx: Receiver<Finished>,
        threads: Vec<JoinHandle<()>>,
        n_batches: usize,
        set: Arc<ImageSet>,
        device: Device,
    ) -> Stream {
        quiet_worker_panics();
        Stream {
            shared,
            rx,
            pending: BTreeMap::new(),
            next: 0,
            n_batches,
            threads,
            set,
            device,
            waited: Duration::ZERO,
            skipped_epoch: 0,
            first_skipped: None,
            output: crate::report::Output::silent(),
        }
    }

    fn start(
        set: Arc<ImageSet>,
        labels: Arc<Vec<i64>>,
        batches: Vec<Vec<usize>>,
        epoch: usize,
        device: Device,
        in_step: bool,
    ) -> Stream {
        quiet_worker_panics();
        let n_batches = batches.len();
        let workers = set.workers.workers.max(1).min(n_batches.max(1));
        let capacity = set.workers.workers.max(1) * set.workers.prefetch.max(1);
        let shared = Arc::new(Shared::new());
        let (tx, rx) = channel::<Finished>();
        let batches = Arc::new(batches);
        let mut threads = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (shared, tx, batches, set, labels) =
                (shared.clone(), tx.clone(), batches.clone(), set.clone(), labels.clone());
            let spawned = std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || loop {
                let job = {
                    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                    while !st.stop && st.next_job < batches.len() && st.next_job >= st.consumed + capacity {
                        st = shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                    if st.stop || st.next_job >= batches.len() {
                        return;
                    }
                    st.next_job += 1;
                    st.next_job - 1
                };
                let make = || make_batch(&set, &labels, &batches[job], epoch, in_step);
                let result = std::panic::catch_unwind(AssertUnwindSafe(make))
                    .unwrap_or_else(|p| Err(Error::invalid(format!("a data worker panicked: {}", panic_text(p)))));
                if tx.send((job, result)).is_err() {
                    return;
                }
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(_) => break,
            }
        }
        Stream::from_parts(shared, rx, threads, n_batches, set, device)
    }

    fn next(&mut self) -> Option<Result<(Tensor, Tensor)>> {
        loop {
            if self.next >= self.n_batches {
                self.report_skipped();
                return None;
            }
            let started = Instant::now();
            let result = loop {
                if let Some(r) = self.pending.remove(&self.next) {
                    break r;
                }
                match self.rx.recv() {
                    Ok((job, r)) => {
                        self.pending.insert(job, r);
                    }
                    Err(_) if self.threads.is_empty() => {
                        break Err(Error::invalid("could not start a data worker thread"));
                    }
                    Err(_) => break Err(Error::invalid("the data workers stopped before the epoch's end")),
                }
            };
            self.waited += started.elapsed();
            {
                let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
                self.next += 1;
                st.consumed = self.next;
                self.shared.cv.notify_all();
            }
            match result {
                Err(e) => {
                    self.next = self.n_batches;
                    return Some(Err(e));
                }
                Ok(batch) => {
                    self.skipped_epoch += batch.skipped;
                    self.set.skipped.fetch_add(batch.skipped, Ordering::Relaxed);
                    if let Some(first) = batch.first_skipped {
                        self.first_skipped.get_or_insert(first);
                    }
                    if batch.ys.numel() == 0 {
                        continue;
                    }
                    let (xs, ys) = self.to_device(batch.xs, batch.ys);
                    for (k, b) in batch.erase.iter().enumerate() {
                        if let Some(b) = b {
                            super::erase::erase_in_batch(&xs, k as i64, *b);
                        }
                    }
                    return Some(Ok((xs, ys)));
                }
            }
        }
    }

    fn to_device(&self, xs: Tensor, ys: Tensor) -> (Tensor, Tensor) {
        let xs = match self.device {
            Device::Cpu => xs,
            d => xs.pin_memory(d).to_device_(d, Kind::Uint8, true, false),
        };
        (self.set.transforms.normalize(&xs), ys.to_device(self.device))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.stop = true;
            self.shared.cv.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Decodes and transforms the samples `ks` of `set` into one uint8 batch [B, C, H, W] and its labels. A sample
/// that fails ends the batch with an error naming its file, or with `skip_bad` is left out; a panic is caught and
/// reported the same way. With `in_step` (a distributed training epoch) a batch none of whose images decoded is
/// an error even with `skip_bad` (see [`whole_batch_skipped`]).
fn make_batch(set: &ImageSet, labels: &[i64], ks: &[usize], epoch: usize, in_step: bool) -> Result<Batch> {
    let mut images = Vec::with_capacity(ks.len());
    let mut ys = Vec::with_capacity(ks.len());
    let mut erase = Vec::with_capacity(ks.len());
    let mut first_skipped = None;
    let mut skipped = 0usize;
    for &k in ks {
        let path = set.index.paths[set.samples[k] as usize].display().to_string();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| set.load(k, epoch))).unwrap_or_else(|p| {
            Err(Error::data(&path, format!("a data worker panicked on this image: {}", panic_text(p))))
        });
        match r {
            Ok((img, erased)) => {
                images.push(img);
                erase.push(erased);
                ys.push(labels[k]);
            }
            Err(e) if set.workers.skip_bad => {
                first_skipped.get_or_insert_with(|| e.to_string());
                skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Batch::collate(set, images, ys, erase, skipped, first_skipped, in_step)
}

/// The error of a distributed training batch none of whose images decoded, even with `--skip-bad-images`: the
/// consumer drops an empty batch, and this rank would then take one step fewer than the others, whose gradient
/// all-reduce would meet its next collective (Gloo aborts the process on the size mismatch).
pub(crate) fn whole_batch_skipped(skipped: usize, first: Option<String>) -> Error {
    Error::invalid(format!(
        "none of the {skipped} image(s) of a batch decoded, and in a distributed run a rank cannot skip a whole \
         batch (the ranks step together); fix or remove the images, or use a larger ⟨batch_size⟩ (first: {})",
        first.unwrap_or_default()
    ))
}

/// The transforms of a run on an image folder: the model's preset (its registry entry's input size, crop
/// fraction, mean/std and interpolation, as `predict` uses them), then what the config sets. Models not made for
/// ImageNet take their registry input size and pixels / 255 (mean 0, std 1); a model without an image input size
/// needs `--train-crop-size`.
pub fn resolve_transforms(run: &crate::config::Run, channels: Option<u32>) -> Result<Transforms> {
    use super::transforms::Interpolation;
    let (config, entry) = (&run.config, run.model);
    let rounded = |v: [f32; 3]| v.iter().map(|x| (*x as f64 * 1e6).round() / 1e6).collect::<Vec<f64>>();
    let mut t = match crate::models::preprocess::imagenet_config(entry.name, entry.family, entry.default_classes) {
        Some(c) => Transforms::preset(
            c.size,
            c.crop_pct,
            rounded(c.mean),
            rounded(c.std),
            if c.bicubic { Interpolation::Bicubic } else { Interpolation::Bilinear },
        ),
        None => {
            let (c, side) = match entry.default_input {
                [c, h, _] if *c == 1 || *c == 3 => (*c as usize, Some(*h as u32)),
                _ => (3, None),
            };
            let side = match (config.train_crop_size, side) {
                (Some(s), _) | (None, Some(s)) => s,
                (None, None) => {
                    return Err(Error::config(format!(
                        "{} has no image input size; give the images' side with ⟨train_crop_size⟩ N (e.g. 32)",
                        entry.name
                    )))
                }
            };
            Transforms::preset(side, 0.875, vec![0.0; c], vec![1.0; c], Interpolation::Bilinear)
        }
    };
    if let Some(s) = config.train_crop_size {
        t.train_crop_size = s;
        t.val_crop_size = s;
        t.val_resize_size = (s as f64 / 0.875).floor() as u32;
    }
    if let Some(s) = config.val_crop_size {
        t.val_crop_size = s;
        if config.val_resize_size.is_none() {
            t.val_resize_size = (s as f64 / 0.875).floor() as u32;
        }
    }
    if let Some(s) = config.val_resize_size {
        t.val_resize_size = s;
    }
    if let Some(i) = run.interpolation {
        t.interpolation = i;
    }
    if let Some(c) = channels {
        if c != t.channels {
            let (m, s) =
                (t.mean.iter().sum::<f64>() / t.channels as f64, t.std.iter().sum::<f64>() / t.channels as f64);
            t.mean = vec![m; c as usize];
            t.std = vec![s; c as usize];
            t.channels = c;
        }
    }
    if let Some(m) = &config.mean {
        t.mean = m.clone();
    }
    if let Some(s) = &config.std {
        t.std = s.clone();
    }
    t.decode_scaling = config.decode_scaling.unwrap_or(super::draft::DEFAULT);
    t.random_erase = config.random_erase;
    t.auto_augment = run.auto_augment;
    t.validate()?;
    Ok(t)
}

/// The worker settings a config asks for.
pub fn worker_config(config: &crate::config::RunConfig) -> WorkerConfig {
    WorkerConfig {
        workers: config.workers.unwrap_or_else(default_workers).max(1),
        prefetch: config.prefetch.unwrap_or(2).max(1),
        skip_bad: config.skip_bad_images,
    }
}

/// The `channels=1|3` option of an image folder's spec (the only option it takes).
pub fn folder_channels(name: &str, options: &BTreeMap<String, String>) -> Result<Option<u32>> {
    for k in options.keys() {
        if k == "size" {
            return Err(Error::data(
                name,
                "an image folder takes its sizes from the model or from ⟨train_crop_size⟩, ⟨val_resize_size⟩ and \
                 ⟨val_crop_size⟩, not size=",
            ));
        }
        if k != "channels" {
            return Err(Error::data(name, format!("option '{k}' unknown for an image folder; it takes channels=1|3")));
        }
    }
    match options.get("channels").map(|s| s.trim()) {
        None => Ok(None),
        Some("1") => Ok(Some(1)),
        Some("3") => Ok(Some(3)),
        Some(v) => Err(Error::data(name, format!("option channels={v}: give 1 (grey) or 3 (RGB)"))),
    }
}

/// A run's training (and validation) data when `--data` is an image folder: lazy sets with the run's transforms,
/// the validation split drawn with the seed and stratified by class, or `--validation-data` (a folder, read the
/// same way). `None` when the data is not an image folder.
pub fn for_run(run: &crate::config::Run) -> Result<Option<(Dataset, Option<Dataset>, Transforms)>> {
    if let Some(data) = super::shards::for_run(run)? {
        return Ok(Some(data));
    }
    let config = &run.config;
    let Some((dir, options)) = run.data.image_folder() else { return Ok(None) };
    let channels = folder_channels(&dir.display().to_string(), options)?;
    let transforms = resolve_transforms(run, channels)?;
    let workers = worker_config(config);
    // A batch's memory, checked before any image is read: the uint8 batches in flight (workers × prefetch, and
    // the one being consumed) and the float32 batch the model gets with its normalised copy.
    let side = transforms.train_crop_size.max(transforms.val_crop_size) as u64;
    let batch = config.batch_size as u64 * transforms.channels as u64 * side * side;
    let in_flight = (workers.workers * workers.prefetch) as u64 + 1;
    crate::util::check_memory(
        batch.saturating_mul(in_flight + 8),
        format!("{}: batches of {} images of {side}x{side}", dir.display(), config.batch_size),
    )?;
    let full = folder_dataset(dir, transforms.clone(), true, workers, config.seed)?;
    let (train, validation) = match (&run.validation_data, config.validation_split) {
        (Some(source), _) => {
            let v = match source.image_folder() {
                Some((vdir, vopts)) => {
                    folder_channels(&vdir.display().to_string(), vopts)?;
                    folder_dataset(vdir, transforms.clone(), false, workers, config.seed)?
                }
                None => {
                    return Err(Error::data(
                        config.validation_data.as_deref().unwrap_or_default(),
                        "the training data is an image folder, so the validation data must be one too",
                    ))
                }
            };
            (full, Some(v))
        }
        (None, Some(f)) => {
            let (t, v) = split_stratified(&full, f, config.seed)?;
            (t, Some(v))
        }
        (None, None) => (full, None),
    };
    Ok(Some((train, validation, transforms)))
}
