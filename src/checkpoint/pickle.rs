//! The pickle subset of `torch.save` files, both ways.
//!
//! Reading runs a small pickle machine that resolves only the globals `torch.load(weights_only=True)` accepts
//! for state dicts and training checkpoints (OrderedDict, the tensor rebuild functions, the storage classes);
//! any other global (`posix.system`, `builtins.eval`, …) stops the load with an error that names it, so no
//! code from a file ever runs. Every read is bounds-checked and containers are shared (`Rc`), so a hostile
//! file costs at most time and memory linear in its size.
//!
//! Writing emits protocol 2 as `torch.save` does: `collections.OrderedDict` via REDUCE, tensors via
//! `torch._utils._rebuild_tensor_v2` with a `('storage', torch.XStorage, key, 'cpu', numel)` persistent id.
//! serde-pickle was considered: it has no persistent-id hook (torch keeps every tensor's data behind one) and
//! resolves only a fixed set of globals, so this subset lives here (about 800 lines with the writer).
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tch::Kind;

/// An error message (the caller adds the file path).
pub(crate) type Msg = String;

/// A value on the pickle machine's stack.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<DictObj>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

// Dropping a value nested a million deep (one byte per level in a pickle: TUPLE1 repeated) must not recurse.
impl Drop for Value {
    fn drop(&mut self) {
        let mut work = Vec::new();
        take_children(self, &mut work);
        while let Some(mut v) = work.pop() {
            take_children(&mut v, &mut work);
        }
    }
}

/// Moves the children of a container that nothing else references into `work`.
fn take_children(v: &mut Value, work: &mut Vec<Value>) {
    match v {
        Value::Tuple(rc) => {
            if let Some(items) = Rc::get_mut(rc) {
                work.append(items);
            }
        }
        Value::List(rc) => {
            if let Some(items) = Rc::get_mut(rc) {
                work.append(items.get_mut());
            }
        }
        Value::Dict(rc) => {
            if let Some(d) = Rc::get_mut(rc) {
                for (k, x) in d.get_mut().items.drain(..) {
                    work.push(k);
                    work.push(x);
                }
            }
        }
        _ => {}
    }
}

/// A dict in insertion order; string and integer keys are unique as in Python.
#[derive(Debug, Default)]
pub(crate) struct DictObj {
    pub ordered: bool,
    pub items: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

#[derive(Debug, Hash, PartialEq, Eq)]
enum Key {
    Str(Rc<str>),
    Int(i64),
}

impl DictObj {
    fn new(ordered: bool) -> Self {
        DictObj { ordered, ..Default::default() }
    }
    fn insert(&mut self, k: Value, v: Value) {
        let key = match &k {
            Value::Str(s) => Some(Key::Str(s.clone())),
            Value::Int(i) => Some(Key::Int(*i)),
            Value::Bool(b) => Some(Key::Int(*b as i64)),
            _ => None,
        };
        match key {
            Some(key) => match self.index.get(&key) {
                Some(&i) => self.items[i].1 = v,
                None => {
                    self.index.insert(key, self.items.len());
                    self.items.push((k, v));
                }
            },
            None => self.items.push((k, v)),
        }
    }
}

/// The globals the reader resolves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    CodecsEncode,
    StorageType(Kind),
}

/// A storage named by a persistent id: its record `data/<key>` holds `numel` elements of `kind`.
#[derive(Debug)]
pub(crate) struct StorageRef {
    pub kind: Kind,
    pub key: String,
    pub numel: i64,
}

/// A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

/// The storage classes `torch.save` names, with their element kinds.
pub(crate) const STORAGE_TYPES: [(&str, Kind); 12] = [
    ("FloatStorage", Kind::Float),
    ("DoubleStorage", Kind::Double),
    ("HalfStorage", Kind::Half),
    ("BFloat16Storage", Kind::BFloat16),
    ("LongStorage", Kind::Int64),
    ("IntStorage", Kind::Int),
    ("ShortStorage", Kind::Int16),
    ("CharStorage", Kind::Int8),
    ("ByteStorage", Kind::Uint8),
    ("BoolStorage", Kind::Bool),
    ("ComplexFloatStorage", Kind::ComplexFloat),
    ("ComplexDoubleStorage", Kind::ComplexDouble),
];

pub(crate) fn storage_name(kind: Kind) -> Option<&'static str> {
    STORAGE_TYPES.iter().find(|(_, k)| *k == kind).map(|(n, _)| *n)
}

/// Globals `torch.load(weights_only=True)` also accepts but that a state dict or training checkpoint never needs.
fn weights_only_allows(module: &str, name: &str) -> bool {
    module == "torch"
        || module.starts_with("torch.")
        || matches!((module, name), ("collections", "Counter") | ("builtins", "set" | "bytearray" | "complex"))
}

fn resolve_global(module: &str, name: &str) -> Result<Global, Msg> {
    // As the weights-only unpickler: protocol-2 files written by Python 3 use Python 2's module names.
    let module = match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        m => m,
    };
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", n) if STORAGE_TYPES.iter().any(|(s, _)| *s == n) => {
            Global::StorageType(STORAGE_TYPES.iter().find(|(s, _)| *s == n).map(|(_, k)| *k).unwrap_or(Kind::Float))
        }
        _ if weights_only_allows(module, name) => {
            return Err(format!(
                "unsupported global '{module}.{name}': tchzoo reads state dicts and training checkpoints \
                 (tensors, dicts, lists, tuples, numbers, strings)"
            ))
        }
        _ => {
            return Err(format!(
                "refusing to load global '{module}.{name}': a checkpoint may only hold tensors and plain data \
                 (torch.load(weights_only=True) refuses it too); this file could run code"
            ))
        }
    };
    Ok(global)
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
    fn int(&self, what: &str) -> Result<i64, Msg> {
        match self {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(*b as i64),
            other => Err(format!("{what}: expected an int, got {}", other.type_name())),
        }
    }
    fn ints(&self, what: &str) -> Result<Vec<i64>, Msg> {
        match self {
            Value::Tuple(items) => items.iter().map(|v| v.int(what)).collect(),
            Value::List(items) => items.borrow().iter().map(|v| v.int(what)).collect(),
            other => Err(format!("{what}: expected a tuple of ints, got {}", other.type_name())),
        }
    }
}

/// The most dims a tensor may have (libtorch's limit is 64 too).
const MAX_DIMS: usize = 64;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

/// Runs the pickle in `data` and returns the object it builds.
pub(crate) fn unpickle(data: &[u8]) -> Result<Value, Msg> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    m.run()
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Msg> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            format!("data.pkl is truncated (needs {n} more bytes at byte {} of {})", self.pos, self.data.len())
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Msg> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Msg> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Msg> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Msg> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len64(&mut self) -> Result<usize, Msg> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| format!("data.pkl: length {n} is too large"))
    }
    fn line(&mut self) -> Result<&'a str, Msg> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().take(512).position(|&b| b == b'\n').ok_or("data.pkl: GLOBAL name is unterminated")?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| "data.pkl: GLOBAL name is not UTF-8".to_string())?;
        self.pos += end + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<Value, Msg> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| format!("data.pkl: string at byte {} is not UTF-8", self.pos))?;
        Ok(Value::Str(Rc::from(s)))
    }
    fn pop(&mut self) -> Result<Value, Msg> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format!("data.pkl: stack underflow at byte {}", self.pos));
        }
        self.stack.pop().ok_or_else(|| "data.pkl: stack underflow".into())
    }
    fn top(&mut self) -> Result<&mut Value, Msg> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format!("data.pkl: stack underflow at byte {}", self.pos));
        }
        self.stack.last_mut().ok_or_else(|| "data.pkl: stack underflow".into())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, Msg> {
        let mark = self.marks.pop().ok_or_else(|| format!("data.pkl: no MARK before byte {}", self.pos))?;
        Ok(self.stack.split_off(mark))
    }
    fn memo_get(&self, i: u32) -> Result<Value, Msg> {
        self.memo.get(&i).cloned().ok_or_else(|| format!("data.pkl: memo entry {i} is not set"))
    }
    fn memo_put(&mut self, i: u32) -> Result<(), Msg> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn run(&mut self) -> Result<Value, Msg> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("data.pkl: unsupported pickle protocol {proto}"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(format!("data.pkl: integer of {n} bytes at byte {at} does not fit 64 bits"));
                    }
                    let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                    a[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(a)));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.len64()?;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'U' | b'T' => {
                    // Python 2 byte strings (SHORT_BINSTRING, BINSTRING): read as latin-1 text, as torch does.
                    let n = if op == b'U' { self.u8()? as usize } else { self.u32()? as usize };
                    let b = self.take(n)?;
                    self.stack.push(Value::Str(Rc::from(b.iter().map(|&c| c as char).collect::<String>())));
                }
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => self.u8()? as usize,
                        b'B' => self.u32()? as usize,
                        _ => self.len64()?,
                    };
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b']' => self.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => return Err(format!("data.pkl: APPEND to a {} at byte {at}", other.type_name())),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => return Err(format!("data.pkl: APPENDS to a {} at byte {at}", other.type_name())),
                    }
                }
                b'}' => self.stack.push(Value::Dict(Rc::new(RefCell::new(DictObj::new(false))))),
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = Rc::new(RefCell::new(DictObj::new(false)));
                    set_items(&d, items, at)?;
                    self.stack.push(Value::Dict(d));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.borrow_mut().insert(k, v),
                        other => return Err(format!("data.pkl: SETITEM on a {} at byte {at}", other.type_name())),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Dict(d) => {
                            let d = d.clone();
                            set_items(&d, items, at)?;
                        }
                        other => return Err(format!("data.pkl: SETITEMS on a {} at byte {at}", other.type_name())),
                    }
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(resolve_global(module, name)?));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(resolve_global(m, n)?)),
                        _ => return Err(format!("data.pkl: STACK_GLOBAL without two strings at byte {at}")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let args = match &args {
                        Value::Tuple(a) => a.clone(),
                        other => {
                            return Err(format!("data.pkl: REDUCE with {} arguments at byte {at}", other.type_name()))
                        }
                    };
                    let v = match func {
                        Value::Global(g) => reduce(g, &args)?,
                        other => return Err(format!("data.pkl: REDUCE calls a {} at byte {at}", other.type_name())),
                    };
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    match (self.top()?, &state) {
                        // OrderedDict's `_metadata` attribute (module versions) and a Parameter's extra state: unused.
                        (Value::Dict(_), Value::Dict(_) | Value::None) => {}
                        (Value::Tensor(_), _) => {}
                        (obj, _) => {
                            return Err(format!(
                                "data.pkl: BUILD of a {} with a {} at byte {at}",
                                obj.type_name(),
                                state.type_name()
                            ))
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = persistent_load(&pid)?;
                    self.stack.push(Value::Storage(Rc::new(storage)));
                }
                0x81 | 0x92 | b'i' | b'o' => {
                    return Err(format!(
                        "data.pkl: object construction (opcode 0x{op:02x}) at byte {at} is not allowed in a checkpoint"
                    ))
                }
                _ => {
                    return Err(format!("data.pkl: unsupported pickle opcode 0x{op:02x} at byte {at}"));
                }
            }
        }
    }
}

fn set_items(d: &Rc<RefCell<DictObj>>, items: Vec<Value>, at: usize) -> Result<(), Msg> {
    if !items.len().is_multiple_of(2) {
        return Err(format!("data.pkl: odd number of items for a dict at byte {at}"));
    }
    let mut d = d.borrow_mut();
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        d.insert(k, v);
    }
    Ok(())
}

fn persistent_load(pid: &Value) -> Result<StorageRef, Msg> {
    let items = match pid {
        Value::Tuple(t) => t.clone(),
        other => return Err(format!("data.pkl: persistent id is a {}, not a tuple", other.type_name())),
    };
    match &items[..] {
        [Value::Str(tag), Value::Global(Global::StorageType(kind)), key, _location, numel] if &**tag == "storage" => {
            let key = match key {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                other => return Err(format!("data.pkl: storage key is a {}", other.type_name())),
            };
            let numel = numel.int("storage size")?;
            if numel < 0 {
                return Err(format!("storage '{key}' has negative size {numel}"));
            }
            Ok(StorageRef { kind: *kind, key, numel })
        }
        _ => Err("data.pkl: persistent id is not ('storage', torch.<Type>Storage, key, location, numel)".into()),
    }
}

fn reduce(g: Global, args: &[Value]) -> Result<Value, Msg> {
    match g {
        Global::OrderedDict => {
            if !args.is_empty() {
                return Err("data.pkl: OrderedDict built with arguments".into());
            }
            Ok(Value::Dict(Rc::new(RefCell::new(DictObj::new(true)))))
        }
        Global::RebuildTensorV2 => {
            if !(6..=7).contains(&args.len()) {
                return Err(format!("data.pkl: _rebuild_tensor_v2 with {} arguments", args.len()));
            }
            let storage = match &args[0] {
                Value::Storage(s) => s.clone(),
                other => return Err(format!("data.pkl: tensor storage is a {}", other.type_name())),
            };
            let offset = args[1].int("storage offset")?;
            let size = args[2].ints("tensor size")?;
            let stride = args[3].ints("tensor stride")?;
            if size.len() != stride.len() || size.len() > MAX_DIMS {
                return Err(format!("tensor has size {size:?} but stride {stride:?}"));
            }
            Ok(Value::Tensor(Rc::new(TensorRef { storage, offset, size, stride })))
        }
        Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
            Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
            _ => Err("data.pkl: _rebuild_parameter without a tensor".into()),
        },
        Global::CodecsEncode => match args {
            // How protocol 2 stores `bytes`: encode(latin-1 text, 'latin1').
            [Value::Str(s), ..] => Ok(Value::Bytes(Rc::from(s.chars().map(|c| c as u32 as u8).collect::<Vec<u8>>()))),
            _ => Err("data.pkl: _codecs.encode without a string".into()),
        },
        Global::StorageType(_) => Err("data.pkl: a storage class is called directly".into()),
    }
}

// ----------------------------------------------------------------------------------------------------------
// Writing

/// What the writer pickles; tensors are described by the caller (storage key, kind, numel, size, stride).
pub(crate) enum Out<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Tuple(Vec<Out<'a>>),
    List(Vec<Out<'a>>),
    Dict(Vec<(Out<'a>, Out<'a>)>),
    OrderedDict(Vec<(Out<'a>, Out<'a>)>),
    Tensor { key: String, kind: Kind, numel: i64, size: Vec<i64>, stride: Vec<i64> },
}

/// A protocol-2 pickler that memoizes globals and strings as Python's does.
#[derive(Default)]
pub(crate) struct Pickler {
    pub buf: Vec<u8>,
    memo: HashMap<String, u32>,
    next: u32,
}

impl Pickler {
    pub fn new() -> Self {
        let mut p = Pickler::default();
        p.buf.extend_from_slice(&[0x80, 2]);
        p
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(b'.');
        self.buf
    }
    fn put(&mut self) -> u32 {
        let i = self.next;
        self.next += 1;
        if i < 256 {
            self.buf.extend_from_slice(&[b'q', i as u8]);
        } else {
            self.buf.push(b'r');
            self.buf.extend_from_slice(&i.to_le_bytes());
        }
        i
    }
    fn get(&mut self, i: u32) {
        if i < 256 {
            self.buf.extend_from_slice(&[b'h', i as u8]);
        } else {
            self.buf.push(b'j');
            self.buf.extend_from_slice(&i.to_le_bytes());
        }
    }
    fn memoized(&mut self, key: String, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some(&i) = self.memo.get(&key) {
            self.get(i);
        } else {
            write(&mut self.buf);
            let i = self.put();
            self.memo.insert(key, i);
        }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.memoized(format!("g:{module}\n{name}"), |buf| {
            buf.push(b'c');
            buf.extend_from_slice(module.as_bytes());
            buf.push(b'\n');
            buf.extend_from_slice(name.as_bytes());
            buf.push(b'\n');
        });
    }
    fn str(&mut self, s: &str) {
        self.memoized(format!("s:{s}"), |buf| {
            buf.push(b'X');
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        });
    }
    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.buf.extend_from_slice(&[b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.buf.push(b'M');
            self.buf.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.buf.push(b'J');
            self.buf.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // LONG1: minimal two's complement, little-endian.
            let bytes = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let (last, prev) = (bytes[n - 1], bytes[n - 2]);
                if (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.buf.extend_from_slice(&[0x8a, n as u8]);
            self.buf.extend_from_slice(&bytes[..n]);
        }
    }
    fn ints_tuple(&mut self, v: &[i64]) {
        let items: Vec<Out> = v.iter().map(|&i| Out::Int(i)).collect();
        self.write(&Out::Tuple(items));
    }
    fn items(&mut self, items: &[(Out, Out)]) {
        for chunk in items.chunks(1000) {
            self.buf.push(b'(');
            for (k, v) in chunk {
                self.write(k);
                self.write(v);
            }
            self.buf.push(b'u');
        }
    }
    fn ordered_dict_new(&mut self) {
        self.global("collections", "OrderedDict");
        self.buf.extend_from_slice(b")R");
        self.put();
    }

    pub fn write(&mut self, v: &Out) {
        match v {
            Out::None => self.buf.push(b'N'),
            Out::Bool(b) => self.buf.push(if *b { 0x88 } else { 0x89 }),
            Out::Int(i) => self.int(*i),
            Out::Float(f) => {
                self.buf.push(b'G');
                self.buf.extend_from_slice(&f.to_be_bytes());
            }
            Out::Str(s) => self.str(s),
            Out::Bytes(b) => {
                // Protocol 2 has no bytes opcode; Python writes _codecs.encode(latin-1 text, 'latin1').
                self.global("_codecs", "encode");
                let text: String = b.iter().map(|&c| c as char).collect();
                self.str(&text);
                self.str("latin1");
                self.buf.extend_from_slice(&[0x86, b'R']);
                self.put();
            }
            Out::Tuple(items) => match items.len() {
                0 => self.buf.push(b')'),
                n @ 1..=3 => {
                    for it in items {
                        self.write(it);
                    }
                    self.buf.push(0x84 + n as u8);
                }
                _ => {
                    self.buf.push(b'(');
                    for it in items {
                        self.write(it);
                    }
                    self.buf.push(b't');
                }
            },
            Out::List(items) => {
                self.buf.push(b']');
                self.put();
                for chunk in items.chunks(1000) {
                    self.buf.push(b'(');
                    for it in chunk {
                        self.write(it);
                    }
                    self.buf.push(b'e');
                }
            }
            Out::Dict(items) => {
                self.buf.push(b'}');
                self.put();
                self.items(items);
            }
            Out::OrderedDict(items) => {
                self.ordered_dict_new();
                self.items(items);
            }
            Out::Tensor { key, kind, numel, size, stride } => {
                self.global("torch._utils", "_rebuild_tensor_v2");
                self.buf.push(b'(');
                // The persistent id: ('storage', torch.FloatStorage, '0', 'cpu', numel).
                self.buf.push(b'(');
                self.str("storage");
                self.global("torch", storage_name(*kind).unwrap_or("FloatStorage"));
                self.str(key);
                self.str("cpu");
                self.int(*numel);
                self.buf.push(b't');
                self.buf.push(b'Q');
                self.int(0);
                self.ints_tuple(size);
                self.ints_tuple(stride);
                self.buf.push(0x89);
                self.ordered_dict_new();
                self.buf.extend_from_slice(b"tR");
                self.put();
            }
        }
    }
}
