//! A restricted reader of Python pickles (protocols 2 to 5) that builds only
//! None, bools, ints, floats, strings, bytes, tuples, lists, dicts and numpy
//! arrays. Unlike Python's `pickle.load` it never runs code: the only globals
//! it accepts are the handful numpy and Python itself use to describe those
//! values, and each is interpreted here (see `Allowed`); any other global is
//! refused with its name.
//!
//! Values live in one flat arena (`Pickle::nodes`) and refer to each other by
//! index, like Python's objects do by reference: the memo (`BINGET`) shares a
//! node, `BUILD` fills a dtype or array in place, and cyclic or deeply nested
//! input cannot overflow the stack, since nothing here recurses.
//!
//! Every declared size (string lengths, array shapes times item sizes) is
//! checked against the bytes that are really there before anything is
//! allocated, so a hostile header cannot make the reader allocate more than
//! the input's size.

/// Index of a value in `Pickle::nodes`.
pub type Id = usize;

/// The globals a numpy pickle needs, each interpreted by this reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// `numpy.core.multiarray._reconstruct` (numpy 1) or `numpy._core.multiarray._reconstruct` (numpy 2):
    /// an empty array that a later `BUILD` fills.
    Reconstruct,
    /// `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer` (protocol 5): buffer, dtype, shape, order.
    FromBuffer,
    /// `numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`: a numpy scalar from (dtype, bytes).
    Scalar,
    /// `numpy.ndarray` (only passed to `_reconstruct`).
    NdArray,
    /// `numpy.dtype`.
    Dtype,
    /// `_codecs.encode(str, 'latin1')`: how protocol 2 spells bytes.
    CodecsEncode,
    /// `builtins.bytes` / `__builtin__.bytes` called with no arguments: empty bytes under protocol 2.
    Bytes,
}

impl Allowed {
    fn lookup(module: &str, name: &str) -> Option<Allowed> {
        let numpy = |sub: &str| module == format!("numpy.core.{sub}") || module == format!("numpy._core.{sub}");
        Some(match name {
            "_reconstruct" if numpy("multiarray") => Allowed::Reconstruct,
            "scalar" if numpy("multiarray") => Allowed::Scalar,
            "_frombuffer" if numpy("numeric") => Allowed::FromBuffer,
            "ndarray" if module == "numpy" => Allowed::NdArray,
            "dtype" if module == "numpy" => Allowed::Dtype,
            "encode" if module == "_codecs" => Allowed::CodecsEncode,
            "bytes" if module == "builtins" || module == "__builtin__" => Allowed::Bytes,
            _ => return None,
        })
    }
}

/// Element type of a numpy array: kind ('f', 'i', 'u', 'b', 'U', 'S', 'O'), bytes per item, byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtype {
    pub kind: char,
    pub itemsize: usize,
    pub big_endian: bool,
}

/// What a numpy array holds: raw items, or (for dtype 'O') one value per element.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    Raw(Vec<u8>),
    Objects(Vec<Id>),
}

/// A numpy array. `data` is in C order unless `fortran`.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub fortran: bool,
    pub data: ArrayData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(Allowed),
    Dtype(Dtype),
    /// Made by `_reconstruct`, filled by `BUILD`; `None` until then.
    Array(Option<NdArray>),
}

/// A parsed pickle: the arena and the top-level value.
#[derive(Debug)]
pub struct Pickle {
    pub nodes: Vec<Node>,
    pub root: Id,
}

/// What is wrong with a pickle, and where (byte offset of the opcode).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("byte {offset}: {fault}")]
pub struct ParseError {
    pub offset: usize,
    pub fault: Fault,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Fault {
    #[error("the stream ends inside opcode {opcode:?} (the file is truncated)")]
    Truncated { opcode: char },
    #[error("the stream ends without a STOP opcode (the file is truncated)")]
    NoStop,
    #[error("global '{module}.{name}' is not allowed: this reader builds only dicts, lists, tuples, strings, numbers and numpy arrays and never runs code")]
    Forbidden { module: String, name: String },
    #[error("opcode {0:#04x} is not supported (only protocols 2 to 5 as written by Python 3 and numpy)")]
    Unsupported(u8),
    #[error("opcode {opcode:?}: {what}")]
    Invalid { opcode: char, what: String },
}

/// Parse a whole pickle held in memory.
pub fn parse(bytes: &[u8]) -> Result<Pickle, ParseError> {
    let mut p = Parser {
        bytes,
        pos: 0,
        op_at: 0,
        op: '?',
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Default::default(),
    };
    loop {
        p.op_at = p.pos;
        let Some(&code) = bytes.get(p.pos) else {
            return Err(ParseError { offset: p.pos, fault: Fault::NoStop });
        };
        p.pos += 1;
        p.op = char::from(code);
        if code == b'.' {
            let root = p.pop()?;
            return Ok(Pickle { nodes: p.nodes, root });
        }
        p.step(code).map_err(|fault| ParseError { offset: p.op_at, fault })?;
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    op_at: usize,
    op: char,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, Id>,
}

impl Parser<'_> {
    fn bad(&self, what: impl Into<String>) -> Fault {
        Fault::Invalid { opcode: self.op, what: what.into() }
    }

    fn take(&mut self, n: u64) -> Result<&[u8], Fault> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return Err(Fault::Truncated { opcode: self.op });
        }
        let n = n as usize;
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn uint(&mut self, width: usize) -> Result<u64, Fault> {
        let b = self.take(width as u64)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Read a `width`-byte little-endian operand and hand it to `then` (a length or a memo key).
    fn sized(&mut self, width: usize, then: fn(&mut Self, u64) -> Result<(), Fault>) -> Result<(), Fault> {
        let n = self.uint(width)?;
        then(self, n)
    }

    fn line(&mut self) -> Result<String, Fault> {
        let rest = &self.bytes[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or(Fault::Truncated { opcode: self.op })?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| self.bad("the name is not UTF-8"))?.to_string();
        self.pos += end + 1;
        Ok(s)
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn pop(&mut self) -> Result<Id, ParseError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.len() > floor {
            true => Ok(self.stack.pop().unwrap_or_default()),
            false => Err(ParseError { offset: self.op_at, fault: self.bad("the stack is empty") }),
        }
    }

    fn pop1(&mut self) -> Result<Id, Fault> {
        self.pop().map_err(|e| e.fault)
    }

    fn top(&self) -> Result<Id, Fault> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.len() > floor {
            true => Ok(self.stack[self.stack.len() - 1]),
            false => Err(self.bad("the stack is empty")),
        }
    }

    /// Everything pushed since the last MARK, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Id>, Fault> {
        let m = self.marks.pop().filter(|&m| m <= self.stack.len()).ok_or_else(|| self.bad("no MARK before it"))?;
        Ok(self.stack.split_off(m))
    }

    fn str_of(&self, id: Id) -> Option<&str> {
        match &self.nodes[id] {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int_of(&self, id: Id) -> Option<i64> {
        match self.nodes[id] {
            Node::Int(i) => Some(i),
            Node::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    fn tuple_of(&self, id: Id) -> Option<&[Id]> {
        match &self.nodes[id] {
            Node::Tuple(t) => Some(t),
            _ => None,
        }
    }

    fn text(&mut self, n: u64) -> Result<(), Fault> {
        let op = self.op;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| Fault::Invalid { opcode: op, what: "the string is not UTF-8".into() })?;
        let s = s.to_string();
        self.push(Node::Str(s));
        Ok(())
    }

    fn blob(&mut self, n: u64) -> Result<(), Fault> {
        let b = self.take(n)?.to_vec();
        self.push(Node::Bytes(b));
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), Fault> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), Fault> {
        let id = *self.memo.get(&key).ok_or_else(|| self.bad(format!("memo entry {key} was never stored")))?;
        self.stack.push(id);
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> Result<(), Fault> {
        match Allowed::lookup(&module, &name) {
            Some(a) => {
                self.push(Node::Global(a));
                Ok(())
            }
            None => Err(Fault::Forbidden { module, name }),
        }
    }

    fn step(&mut self, code: u8) -> Result<(), Fault> {
        match code {
            0x80 => {
                let v = self.uint(1)?;
                if !(2..=5).contains(&v) {
                    return Err(self.bad(format!("protocol {v} (supported: 2 to 5)")));
                }
            }
            0x95 => {
                self.uint(8)?; // FRAME: a length hint only
            }
            b'(' => self.marks.push(self.stack.len()),
            b'}' => self.push(Node::Dict(Vec::new())),
            b']' => self.push(Node::List(Vec::new())),
            b')' => self.push(Node::Tuple(Vec::new())),
            b'N' => self.push(Node::None),
            0x88 => self.push(Node::Bool(true)),
            0x89 => self.push(Node::Bool(false)),
            b'K' => {
                let v = self.uint(1)? as i64;
                self.push(Node::Int(v));
            }
            b'M' => {
                let v = self.uint(2)? as i64;
                self.push(Node::Int(v));
            }
            b'J' => {
                let v = self.uint(4)? as u32 as i32;
                self.push(Node::Int(i64::from(v)));
            }
            0x8a | 0x8b => {
                let n = if code == 0x8a { self.uint(1)? } else { self.uint(4)? };
                if n > 8 {
                    return Err(self.bad(format!("an integer of {n} bytes does not fit in 64 bits")));
                }
                let b = self.take(n)?;
                let mut v = b.iter().rev().fold(0i64, |acc, &x| (acc << 8) | i64::from(x));
                if n > 0 && n < 8 && b[n as usize - 1] & 0x80 != 0 {
                    v -= 1i64 << (8 * n);
                }
                self.push(Node::Int(v));
            }
            b'G' => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.push(Node::Float(f64::from_be_bytes(a)));
            }
            0x8c => self.sized(1, Self::text)?,
            b'X' => self.sized(4, Self::text)?,
            0x8d => self.sized(8, Self::text)?,
            b'C' => self.sized(1, Self::blob)?,
            b'B' => self.sized(4, Self::blob)?,
            0x8e | 0x96 => self.sized(8, Self::blob)?,
            b'q' => self.sized(1, Self::memo_put)?,
            b'r' => self.sized(4, Self::memo_put)?,
            0x94 => {
                let k = self.memo.len() as u64;
                self.memo_put(k)?
            }
            b'h' => self.sized(1, Self::memo_get)?,
            b'j' => self.sized(4, Self::memo_get)?,
            b'0' => {
                self.pop1()?;
            }
            b'2' => {
                let id = self.top()?;
                self.stack.push(id);
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(code - 0x84);
                let mut items = vec![0; n];
                for slot in items.iter_mut().rev() {
                    *slot = self.pop1()?;
                }
                self.push(Node::Tuple(items));
            }
            b'a' => {
                let v = self.pop1()?;
                let list = self.top()?;
                self.extend_list(list, vec![v])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let list = self.top()?;
                self.extend_list(list, items)?;
            }
            b's' => {
                let v = self.pop1()?;
                let k = self.pop1()?;
                let d = self.top()?;
                self.extend_dict(d, vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(self.bad("an odd number of keys and values"));
                }
                let d = self.top()?;
                self.extend_dict(d, items)?;
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(module, name)?
            }
            0x93 => {
                let name = self.pop1()?;
                let module = self.pop1()?;
                match (self.str_of(module), self.str_of(name)) {
                    (Some(m), Some(n)) => {
                        let (m, n) = (m.to_string(), n.to_string());
                        self.global(m, n)?
                    }
                    _ => return Err(self.bad("module and name must be strings")),
                }
            }
            b'R' => {
                let args = self.pop1()?;
                let f = self.pop1()?;
                let node = self.reduce(f, args)?;
                self.push(node);
            }
            b'b' => {
                let state = self.pop1()?;
                let obj = self.top()?;
                self.build(obj, state)?;
            }
            _ => return Err(Fault::Unsupported(code)),
        }
        Ok(())
    }

    fn extend_list(&mut self, list: Id, items: Vec<Id>) -> Result<(), Fault> {
        match &mut self.nodes[list] {
            Node::List(l) => {
                l.extend(items);
                Ok(())
            }
            _ => Err(self.bad("appending to something that is not a list")),
        }
    }

    fn extend_dict(&mut self, d: Id, items: Vec<Id>) -> Result<(), Fault> {
        match &mut self.nodes[d] {
            Node::Dict(pairs) => {
                pairs.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => Err(self.bad("setting an item of something that is not a dict")),
        }
    }

    /// A call (REDUCE) of an allowed global, interpreted here.
    fn reduce(&mut self, f: Id, args: Id) -> Result<Node, Fault> {
        let Node::Global(g) = self.nodes[f] else {
            return Err(self.bad("calling something that is not an allowed global"));
        };
        let args = self.tuple_of(args).ok_or_else(|| self.bad("the arguments are not a tuple"))?.to_vec();
        match (g, args.as_slice()) {
            (Allowed::Reconstruct, [cls, _, _]) if self.nodes[*cls] == Node::Global(Allowed::NdArray) => {
                Ok(Node::Array(None))
            }
            (Allowed::Dtype, [spec, ..]) => {
                let spec = self.str_of(*spec).ok_or_else(|| self.bad("numpy.dtype needs a type string"))?;
                Ok(Node::Dtype(parse_dtype(spec).ok_or_else(|| self.bad(format!("unsupported numpy dtype '{spec}'")))?))
            }
            (Allowed::CodecsEncode, [s, enc]) => {
                let ok_enc = matches!(self.str_of(*enc), Some("latin1" | "latin-1"));
                let s = self
                    .str_of(*s)
                    .filter(|_| ok_enc)
                    .ok_or_else(|| self.bad("_codecs.encode needs (str, 'latin1')"))?;
                let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                Ok(Node::Bytes(bytes.ok_or_else(|| self.bad("a latin1 string holds a character above 255"))?))
            }
            (Allowed::Bytes, []) => Ok(Node::Bytes(Vec::new())),
            (Allowed::Scalar, [dt, data]) => {
                let dtype = self.dtype_of(*dt)?;
                let Node::Bytes(b) = &self.nodes[*data] else {
                    return Err(self.bad("a numpy scalar needs its bytes"));
                };
                if b.len() != dtype.itemsize {
                    return Err(self.bad(format!(
                        "a numpy scalar of {} bytes for a {}-byte dtype",
                        b.len(),
                        dtype.itemsize
                    )));
                }
                let a = NdArray { shape: vec![], dtype, fortran: false, data: ArrayData::Raw(b.clone()) };
                Ok(Node::Array(Some(a)))
            }
            (Allowed::FromBuffer, [buf, dt, shape, order]) => {
                let dtype = self.dtype_of(*dt)?;
                let shape = self.shape_of(*shape)?;
                let fortran = match self.str_of(*order) {
                    Some("C") => false,
                    Some("F") => true,
                    _ => return Err(self.bad("_frombuffer's order must be 'C' or 'F'")),
                };
                let Node::Bytes(b) = &self.nodes[*buf] else {
                    return Err(self.bad("_frombuffer needs a byte buffer"));
                };
                check_size(&shape, &dtype, b.len()).map_err(|w| self.bad(w))?;
                let data = ArrayData::Raw(self.take_bytes(*buf));
                Ok(Node::Array(Some(NdArray { shape, dtype, fortran, data })))
            }
            _ => Err(self.bad(format!("{g:?} called with unexpected arguments"))),
        }
    }

    /// Move an array's buffer out of its bytes node instead of copying it
    /// (numpy writes a fresh buffer per array, so nothing else refers to it).
    fn take_bytes(&mut self, id: Id) -> Vec<u8> {
        match &mut self.nodes[id] {
            Node::Bytes(b) => std::mem::take(b),
            _ => Vec::new(),
        }
    }

    fn dtype_of(&self, id: Id) -> Result<Dtype, Fault> {
        match &self.nodes[id] {
            Node::Dtype(d) => Ok(d.clone()),
            _ => Err(self.bad("expected a numpy dtype")),
        }
    }

    fn shape_of(&self, id: Id) -> Result<Vec<usize>, Fault> {
        let t = self.tuple_of(id).ok_or_else(|| self.bad("an array shape must be a tuple"))?;
        t.iter()
            .map(|&d| self.int_of(d).and_then(|v| usize::try_from(v).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.bad("an array shape must hold non-negative integers"))
    }

    /// BUILD: set a dtype's byte order, or fill an array made by `_reconstruct`.
    fn build(&mut self, obj: Id, state: Id) -> Result<(), Fault> {
        let st = self.tuple_of(state).ok_or_else(|| self.bad("the state is not a tuple"))?.to_vec();
        match &self.nodes[obj] {
            Node::Dtype(_) => {
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
                let [_, order, sub, names, fields, ..] = st.as_slice() else {
                    return Err(self.bad("a dtype state needs at least 5 fields"));
                };
                let plain = [sub, names, fields].iter().all(|&&i| self.nodes[i] == Node::None);
                if !plain {
                    return Err(self.bad("structured or sub-array dtypes are not supported"));
                }
                let big = match self.str_of(*order) {
                    Some(">") => true,
                    Some("<" | "|" | "=") => false,
                    _ => return Err(self.bad("a dtype byte order must be '<', '>', '|' or '='")),
                };
                if let Node::Dtype(d) = &mut self.nodes[obj] {
                    d.big_endian = big && d.itemsize > 1 && d.kind != 'O';
                }
                Ok(())
            }
            Node::Array(None) => {
                // (version, shape, dtype, is_fortran, data)
                let [_, shape, dt, fortran, data] = st.as_slice() else {
                    return Err(self.bad("an array state needs 5 fields"));
                };
                let shape = self.shape_of(*shape)?;
                let dtype = self.dtype_of(*dt)?;
                let fortran = self.int_of(*fortran).ok_or_else(|| self.bad("is_fortran must be a bool"))? != 0;
                let data = match (&self.nodes[*data], dtype.kind) {
                    (Node::Bytes(b), k) if k != 'O' => {
                        check_size(&shape, &dtype, b.len()).map_err(|w| self.bad(w))?;
                        ArrayData::Raw(self.take_bytes(*data))
                    }
                    (Node::List(items), 'O') => {
                        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                        if n != Some(items.len()) {
                            return Err(
                                self.bad(format!("an object array of shape {shape:?} holds {} values", items.len()))
                            );
                        }
                        ArrayData::Objects(items.clone())
                    }
                    _ => return Err(self.bad("the array data does not match its dtype")),
                };
                self.nodes[obj] = Node::Array(Some(NdArray { shape, dtype, fortran, data }));
                Ok(())
            }
            _ => Err(self.bad("BUILD on something that is neither a numpy dtype nor a new array")),
        }
    }
}

/// A numpy type string such as 'f4', '<f8', 'U12', 'S5', 'O8', 'b1'.
fn parse_dtype(spec: &str) -> Option<Dtype> {
    let (big_endian, rest) = match spec.as_bytes().first()? {
        b'>' => (true, &spec[1..]),
        b'<' | b'|' | b'=' => (false, &spec[1..]),
        _ => (false, spec),
    };
    let mut chars = rest.chars();
    let kind = chars.next()?;
    let n: usize = chars.as_str().parse().ok()?;
    let itemsize = match kind {
        'f' if matches!(n, 2 | 4 | 8) => n,
        'i' | 'u' if matches!(n, 1 | 2 | 4 | 8) => n,
        'b' if n == 1 => 1,
        'U' => n.checked_mul(4)?,
        'S' => n,
        'O' if n == 8 => 8,
        _ => return None,
    };
    Some(Dtype { kind, itemsize, big_endian })
}

fn check_size(shape: &[usize], dtype: &Dtype, got: usize) -> Result<(), String> {
    let want = shape.iter().try_fold(dtype.itemsize, |a, &d| a.checked_mul(d));
    match want {
        Some(w) if w == got => Ok(()),
        Some(w) => {
            Err(format!("an array of shape {shape:?} and {}-byte items needs {w} bytes but has {got}", dtype.itemsize))
        }
        None => Err(format!("an array of shape {shape:?} is too large")),
    }
}

impl NdArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Storage position of the element at C-order index `i` (Fortran arrays store the first axis fastest).
    fn storage(&self, i: usize) -> usize {
        if !self.fortran || self.shape.len() < 2 {
            return i;
        }
        let (mut rest, mut pos) = (i, 0);
        let mut stride: usize = self.shape.iter().product();
        for &d in self.shape.iter().rev() {
            let d = d.max(1);
            stride /= d;
            pos += (rest % d) * stride;
            rest /= d;
        }
        pos
    }

    /// The number at C-order index `i` (< len), or `None` for a non-numeric dtype.
    pub fn number(&self, i: usize) -> Option<f64> {
        let ArrayData::Raw(raw) = &self.data else { return None };
        let n = self.dtype.itemsize;
        let at = self.storage(i) * n;
        let b = raw.get(at..at + n)?;
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b);
        if self.dtype.big_endian {
            a[..n].reverse();
        }
        let u = u64::from_le_bytes(a);
        let sign = |bits: u32| ((u << (64 - bits)) as i64 >> (64 - bits)) as f64;
        Some(match (self.dtype.kind, n) {
            ('f', 2) => f64::from(half::f16::from_bits(u as u16)),
            ('f', 4) => f64::from(f32::from_bits(u as u32)),
            ('f', 8) => f64::from_bits(u),
            ('i', _) => sign(8 * n as u32),
            ('u' | 'b', _) => u as f64,
            _ => return None,
        })
    }

    /// The string at C-order index `i` of a 'U' or 'S' array (trailing NULs dropped).
    pub fn string(&self, i: usize) -> Option<String> {
        let ArrayData::Raw(raw) = &self.data else { return None };
        let n = self.dtype.itemsize;
        let at = self.storage(i) * n;
        let b = raw.get(at..at + n)?;
        match self.dtype.kind {
            'S' => Some(String::from_utf8_lossy(b).trim_end_matches('\0').to_string()),
            'U' => {
                let s: String = b
                    .chunks_exact(4)
                    .map(|c| {
                        let w = [c[0], c[1], c[2], c[3]];
                        let v = if self.dtype.big_endian { u32::from_be_bytes(w) } else { u32::from_le_bytes(w) };
                        char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER)
                    })
                    .collect();
                Some(s.trim_end_matches('\0').to_string())
            }
            _ => None,
        }
    }
}

impl Pickle {
    pub fn node(&self, id: Id) -> &Node {
        &self.nodes[id]
    }

    /// The value under a string key of a dict (the last one wins, as in Python).
    pub fn get(&self, dict: Id, key: &str) -> Option<Id> {
        match &self.nodes[dict] {
            Node::Dict(pairs) => pairs.iter().rev().find(|(k, _)| self.key_is(*k, key)).map(|&(_, v)| v),
            _ => None,
        }
    }

    /// The string keys of a dict, in order (non-string keys are skipped).
    pub fn keys(&self, dict: Id) -> Vec<String> {
        match &self.nodes[dict] {
            Node::Dict(pairs) => pairs.iter().filter_map(|(k, _)| self.as_str(*k)).collect(),
            _ => Vec::new(),
        }
    }

    fn key_is(&self, k: Id, key: &str) -> bool {
        self.as_str(k).is_some_and(|s| s == key)
    }

    /// A str or (UTF-8) bytes value as a string.
    pub fn as_str(&self, id: Id) -> Option<String> {
        match &self.nodes[id] {
            Node::Str(s) => Some(s.clone()),
            Node::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_string),
            _ => None,
        }
    }

    /// An int, bool, float or numpy scalar as f64.
    pub fn as_number(&self, id: Id) -> Option<f64> {
        match &self.nodes[id] {
            Node::Int(i) => Some(*i as f64),
            Node::Bool(b) => Some(f64::from(u8::from(*b))),
            Node::Float(f) => Some(*f),
            Node::Array(Some(a)) if a.shape.is_empty() => a.number(0),
            _ => None,
        }
    }

    /// A short description of a value's type, for messages.
    pub fn describe(&self, id: Id) -> String {
        match &self.nodes[id] {
            Node::None => "None".into(),
            Node::Bool(_) => "a bool".into(),
            Node::Int(_) => "an int".into(),
            Node::Float(_) => "a float".into(),
            Node::Str(_) => "a str".into(),
            Node::Bytes(_) => "bytes".into(),
            Node::Tuple(t) => format!("a tuple of {}", t.len()),
            Node::List(l) => format!("a list of {}", l.len()),
            Node::Dict(d) => format!("a dict of {}", d.len()),
            Node::Global(g) => format!("the global {g:?}"),
            Node::Dtype(_) => "a numpy dtype".into(),
            Node::Array(Some(a)) => format!("a numpy array of shape {:?} and kind '{}'", a.shape, a.dtype.kind),
            Node::Array(None) => "an unfilled numpy array".into(),
        }
    }
}
