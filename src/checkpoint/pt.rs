//! `torch.save` files (PyTorch ≥ 1.6 zip format): `<prefix>/data.pkl`, one `<prefix>/data/<key>` record per
//! storage, `byteorder`, `version`. Reading checks every size against the record it names before allocating;
//! writing mirrors `torch.save` (protocol 2, 64-byte aligned stored records, `version` 3, little-endian).
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

use tch::{Device, Kind, Tensor};
use zip::CompressionMethod;

use super::archive::ZipWriter;
use super::pickle::{self, Msg, Out, Pickler, StorageRef, TensorRef, Value};
use super::{dtype_name, Object};
use crate::error::{Error, Result};

/// How deep containers may nest (a state dict needs 1, a training checkpoint 4); also stops reference cycles.
const MAX_DEPTH: usize = 100;
/// The most a deflated record can expand (deflate's limit is about 1032:1).
const MAX_DEFLATE_RATIO: u64 = 1100;
/// The most bytes a view that repeats its storage's elements (stride 0) may expand to.
const MAX_EXPANDED_VIEW: u64 = 64 << 20;

type Archive = zip::ZipArchive<BufReader<File>>;

/// Reads a `torch.save` file into an [`Object`] (tensors on the CPU; tensors that share a storage in the file
/// share it here too).
pub(crate) fn read(path: &Path) -> std::result::Result<Object, Msg> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 4];
    let n = (&file).read(&mut head).map_err(|e| e.to_string())?;
    if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Err("legacy torch.save format (PyTorch < 1.6, not a zip archive); re-save it with a current \
                    torch.save"
            .into());
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        format!("not a torch.save file: not a readable zip archive ({e}); it may be truncated or of another format")
    })?;
    let first = zip.file_names().next().map(|s| s.to_string()).ok_or("not a torch.save file: empty zip archive")?;
    let prefix = first.split('/').next().unwrap_or("").to_string();
    let names: Vec<String> = zip.file_names().map(|s| s.to_string()).collect();
    let has = |rel: &str| names.iter().any(|n| *n == format!("{prefix}/{rel}"));
    if !has("data.pkl") {
        if has("constants.pkl") || names.iter().any(|n| n.starts_with(&format!("{prefix}/code/"))) {
            return Err("a TorchScript archive (torch.jit.save, tch's VarStore::save), not a torch.save state dict; \
                        in Python, torch.save(model.state_dict(), path) writes one"
                .into());
        }
        return Err(format!("not a torch.save file: the zip archive has no {prefix}/data.pkl"));
    }
    if has("byteorder") {
        let order = read_small(&mut zip, &format!("{prefix}/byteorder"), file_len)?;
        match order.as_slice() {
            b"little" => {}
            b"big" => {
                return Err("big-endian archive (byteorder 'big'); only little-endian files are supported: \
                            re-save it on a little-endian machine"
                    .into())
            }
            other => return Err(format!("unknown byteorder '{}'", String::from_utf8_lossy(other))),
        }
    }
    let pkl = read_pickle(&mut zip, &format!("{prefix}/data.pkl"), file_len)?;
    let value = pickle::unpickle(&pkl)?;
    // Shared containers could expand exponentially into the owned tree ("billion laughs"); a real file's tree has
    // fewer nodes than its pickle has bytes.
    let budget = pkl.len() + 1000;
    let mut loader = Loader { zip, prefix, file_len, storages: HashMap::new(), budget };
    loader.convert(&value, "", 0)
}

fn read_small(zip: &mut Archive, name: &str, file_len: u64) -> std::result::Result<Vec<u8>, Msg> {
    let f = zip.by_name(name).map_err(|e| format!("record {name}: {e}"))?;
    check_record(&f, name, f.size(), file_len)?;
    let mut out = Vec::new();
    f.take(file_len.saturating_mul(MAX_DEFLATE_RATIO))
        .read_to_end(&mut out)
        .map_err(|e| format!("record {name} cannot be read ({e}); the file is truncated or damaged"))?;
    Ok(out)
}

/// The most a `data.pkl` may hold: a state dict's pickle takes about 200 bytes a tensor.
const MAX_PICKLE: u64 = 256 << 20;
/// Unpickling takes up to this many bytes of memory per byte of pickle (a one-byte opcode can push an object).
const PICKLE_EXPANSION: u64 = 64;

/// Reads `data.pkl`, bounded by [`MAX_PICKLE`] and by the memory unpickling it would take.
fn read_pickle(zip: &mut Archive, name: &str, file_len: u64) -> std::result::Result<Vec<u8>, Msg> {
    let f = zip.by_name(name).map_err(|e| format!("record {name}: {e}"))?;
    check_record(&f, name, f.size(), file_len)?;
    let limit = MAX_PICKLE.min(crate::util::memory_available() / PICKLE_EXPANSION);
    let refuse = |n: u64| {
        format!(
            "record {name} expands to {n} bytes or more, more than a pickle may take here ({limit} bytes: at most \
             {MAX_PICKLE}, and {PICKLE_EXPANSION} bytes of memory per byte); the file is damaged or malicious"
        )
    };
    if f.size() > limit {
        return Err(refuse(f.size()));
    }
    let mut out = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("record {name} cannot be read ({e}); the file is truncated or damaged"))?;
    if out.len() as u64 > limit {
        return Err(refuse(out.len() as u64));
    }
    Ok(out)
}

/// Refuses a record that claims more bytes than the file could hold.
fn check_record<R: Read>(
    f: &zip::read::ZipFile<R>,
    name: &str,
    needed: u64,
    file_len: u64,
) -> std::result::Result<(), Msg> {
    let limit = match f.compression() {
        CompressionMethod::Stored => file_len,
        _ => f.compressed_size().saturating_mul(MAX_DEFLATE_RATIO),
    };
    if needed > limit || f.compressed_size() > file_len {
        return Err(format!("record {name} claims {needed} bytes, more than the {file_len}-byte file holds"));
    }
    Ok(())
}

struct Loader {
    zip: Archive,
    prefix: String,
    file_len: u64,
    storages: HashMap<String, (Kind, Tensor)>,
    /// Objects left to build.
    budget: usize,
}

fn at(ctx: &str) -> String {
    if ctx.is_empty() {
        String::new()
    } else {
        format!("tensor '{ctx}': ")
    }
}

impl Loader {
    fn storage(&mut self, s: &StorageRef, ctx: &str) -> std::result::Result<Tensor, Msg> {
        if let Some((kind, t)) = self.storages.get(&s.key) {
            if *kind != s.kind {
                return Err(format!("{}storage '{}' is read as two dtypes", at(ctx), s.key));
            }
            return Ok(t.shallow_clone());
        }
        let name = format!("{}/data/{}", self.prefix, s.key);
        let f = self.zip.by_name(&name).map_err(|_| format!("{}storage record {name} is missing", at(ctx)))?;
        let elt = s.kind.elt_size_in_bytes() as u64;
        let needed = (s.numel as u64).checked_mul(elt).ok_or_else(|| {
            format!("{}storage '{}' of {} {} elements is absurdly large", at(ctx), s.key, s.numel, dtype_name(s.kind))
        })?;
        if f.size() < needed {
            return Err(format!(
                "{}storage '{}' needs {needed} bytes for {} {} elements but its record holds {}",
                at(ctx),
                s.key,
                s.numel,
                dtype_name(s.kind),
                f.size()
            ));
        }
        check_record(&f, &name, needed, self.file_len)?;
        crate::util::check_memory(needed, format!("{}storage '{}'", at(ctx), s.key)).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; needed as usize];
        f.take(needed)
            .read_exact(&mut buf)
            .map_err(|e| format!("record {name} cannot be read ({e}); the file is truncated"))?;
        if s.kind == Kind::Bool {
            // A bool must be 0 or 1; any other byte would be undefined behaviour in libtorch.
            buf.iter_mut().for_each(|b| *b = u8::from(*b != 0));
        }
        let t =
            Tensor::f_from_data_size(&buf, &[s.numel], s.kind).map_err(|e| crate::util::first_line(&e.to_string()))?;
        self.storages.insert(s.key.clone(), (s.kind, t.shallow_clone()));
        Ok(t)
    }

    fn tensor(&mut self, r: &TensorRef, ctx: &str) -> std::result::Result<Tensor, Msg> {
        let storage = self.storage(&r.storage, ctx)?;
        let bad = |why: String| {
            format!(
                "{}size {:?}, stride {:?}, offset {} {why} (storage '{}' holds {} elements)",
                at(ctx),
                r.size,
                r.stride,
                r.offset,
                r.storage.key,
                r.storage.numel
            )
        };
        if r.offset < 0 || r.size.iter().any(|&d| d < 0) || r.stride.iter().any(|&d| d < 0) {
            return Err(bad("has a negative entry".into()));
        }
        let numel =
            r.size.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("overflows".into()))?;
        let end = if numel == 0 {
            r.offset
        } else {
            r.size
                .iter()
                .zip(&r.stride)
                .try_fold(r.offset, |acc, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x)))
                .and_then(|last| last.checked_add(1))
                .ok_or_else(|| bad("overflows".into()))?
        };
        if end > r.storage.numel {
            return Err(bad(format!("reaches past the storage (needs {end} elements)")));
        }
        // A view with more elements than its storage repeats them (stride 0, or overlapping strides); whatever
        // uses it later makes it whole, so such an expansion is bounded.
        let bytes = (numel as u64).saturating_mul(r.storage.kind.elt_size_in_bytes() as u64);
        if numel > r.storage.numel && bytes > MAX_EXPANDED_VIEW {
            return Err(bad(format!(
                "repeats its storage's elements into {numel} elements ({bytes} bytes, more than the {MAX_EXPANDED_VIEW} \
                 an overlapping view may take)"
            )));
        }
        storage
            .f_as_strided(r.size.as_slice(), r.stride.as_slice(), r.offset)
            .map_err(|e| crate::util::first_line(&e.to_string()))
    }

    fn convert(&mut self, v: &Value, ctx: &str, depth: usize) -> std::result::Result<Object, Msg> {
        if depth > MAX_DEPTH {
            return Err(format!("data.pkl: containers nested more than {MAX_DEPTH} deep (or a reference cycle)"));
        }
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or("data.pkl: shared containers expand to more objects than the file has bytes")?;
        let sub = |key: &str| if ctx.is_empty() { key.to_string() } else { format!("{ctx}.{key}") };
        Ok(match v {
            Value::None => Object::None,
            Value::Bool(b) => Object::Bool(*b),
            Value::Int(i) => Object::Int(*i),
            Value::Float(f) => Object::Float(*f),
            Value::Str(s) => Object::Str(s.to_string()),
            Value::Bytes(b) => Object::Bytes(b.to_vec()),
            Value::Tuple(items) => Object::Tuple(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| self.convert(x, &sub(&i.to_string()), depth + 1))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            Value::List(items) => {
                let items = items.borrow().clone();
                Object::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| self.convert(x, &sub(&i.to_string()), depth + 1))
                        .collect::<std::result::Result<_, _>>()?,
                )
            }
            Value::Dict(d) => {
                let (ordered, items) = {
                    let d = d.borrow();
                    (d.ordered, d.items.clone())
                };
                let mut out = Vec::with_capacity(items.len());
                for (k, x) in &items {
                    let key = self.convert(k, ctx, depth + 1)?;
                    let name = match &key {
                        Object::Str(s) => sub(s),
                        Object::Int(i) => sub(&i.to_string()),
                        _ => sub("?"),
                    };
                    out.push((key, self.convert(x, &name, depth + 1)?));
                }
                if ordered {
                    Object::OrderedDict(out)
                } else {
                    Object::Dict(out)
                }
            }
            Value::Tensor(t) => Object::Tensor(self.tensor(t, ctx)?),
            Value::Global(_) => return Err(format!("data.pkl: '{ctx}' is a class or function, not data")),
            Value::Storage(_) => return Err(format!("data.pkl: '{ctx}' is a bare storage, not a tensor")),
        })
    }
}

/// Writes `obj` as `torch.save` would, into `out` (the caller makes the write atomic).
pub(crate) fn write(out: File, obj: &Object) -> Result<()> {
    let mut tensors: Vec<Tensor> = Vec::new();
    let tree = to_out(obj, &mut tensors, 0)?;
    let mut p = Pickler::new();
    p.write(&tree);
    let pkl = p.finish();
    let io = |e: std::io::Error| Error::invalid(format!("writing checkpoint: {e}"));
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, out));
    zip.add("archive/data.pkl", &pkl).map_err(io)?;
    zip.add("archive/.format_version", b"1").map_err(io)?;
    zip.add("archive/.storage_alignment", b"64").map_err(io)?;
    zip.add("archive/byteorder", b"little").map_err(io)?;
    let mut id = fnv(0xcbf2_9ce4_8422_2325, &pkl);
    for (i, t) in tensors.iter().enumerate() {
        let n = t.numel();
        let mut buf = vec![0u8; n * t.kind().elt_size_in_bytes()];
        if n > 0 {
            t.f_copy_data_u8(&mut buf, n)?;
        }
        id = fnv(id, &buf[..buf.len().min(4096)]);
        zip.add(&format!("archive/data/{i}"), &buf).map_err(io)?;
    }
    zip.add("archive/version", b"3\n").map_err(io)?;
    let serialization_id = format!("{:020}{:020}", id % 10u64.pow(19), fnv(id, b"id") % 10u64.pow(19));
    zip.add("archive/.data/serialization_id", serialization_id.as_bytes()).map_err(io)?;
    let out = zip.finish().map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(())
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn to_out<'a>(obj: &'a Object, tensors: &mut Vec<Tensor>, depth: usize) -> Result<Out<'a>> {
    if depth > MAX_DEPTH {
        return Err(Error::invalid(format!("checkpoint object nested more than {MAX_DEPTH} deep")));
    }
    let items = |v: &'a [(Object, Object)], tensors: &mut Vec<Tensor>| -> Result<Vec<(Out<'a>, Out<'a>)>> {
        v.iter().map(|(k, x)| Ok((to_out(k, tensors, depth + 1)?, to_out(x, tensors, depth + 1)?))).collect()
    };
    Ok(match obj {
        Object::None => Out::None,
        Object::Bool(b) => Out::Bool(*b),
        Object::Int(i) => Out::Int(*i),
        Object::Float(f) => Out::Float(*f),
        Object::Str(s) => Out::Str(s),
        Object::Bytes(b) => Out::Bytes(b),
        Object::Tuple(v) => Out::Tuple(v.iter().map(|x| to_out(x, tensors, depth + 1)).collect::<Result<_>>()?),
        Object::List(v) => Out::List(v.iter().map(|x| to_out(x, tensors, depth + 1)).collect::<Result<_>>()?),
        Object::Dict(v) => Out::Dict(items(v, tensors)?),
        Object::OrderedDict(v) => Out::OrderedDict(items(v, tensors)?),
        Object::Tensor(t) => {
            let kind = t.f_kind()?;
            if pickle::storage_name(kind).is_none() {
                return Err(Error::invalid(format!("tensors of dtype {kind:?} cannot be saved in a .pt file")));
            }
            // Written contiguous, each in its own storage (torch.save keeps views' whole storages instead).
            let t = t.detach().f_to_device(Device::Cpu)?.f_contiguous()?;
            let out = Out::Tensor {
                key: tensors.len().to_string(),
                kind,
                numel: t.numel() as i64,
                size: t.size(),
                stride: t.stride(),
            };
            tensors.push(t);
            out
        }
    })
}
