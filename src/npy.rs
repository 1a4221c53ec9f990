//! Reading one `.npy` member of an npz archive without trusting it: the header
//! is parsed here (magic, version, the Python dict of `descr`, `fortran_order`
//! and `shape`), the element count and byte size are computed with checked
//! arithmetic and compared with the size the archive declares before anything
//! is allocated, and the data are decoded in bounded chunks. Every problem is a
//! message (the caller adds the file and the array's name); nothing here panics.

use std::io::Read;

/// What kind of values an array holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    Uint,
    /// numpy `<U..`: UTF-32 code points, NUL-padded.
    Unicode,
    /// numpy `|S..`: bytes, NUL-padded.
    Bytes,
}

/// A parsed `descr` such as `<f4` or `<U12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descr {
    pub kind: Kind,
    /// Bytes per element.
    pub size: usize,
    pub big_endian: bool,
    /// The text as written, for messages.
    pub text: String,
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub descr: Descr,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Elements (the product of `shape`, checked).
    pub count: usize,
    /// Bytes of data after the header (`count * descr.size`, checked).
    pub data_bytes: usize,
    /// Bytes of the header itself (magic, version, length, dict).
    pub header_bytes: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Read and check the header from `r`, whose whole content is declared to be
/// `declared` bytes long (the archive's uncompressed size of the member).
pub fn read_header<R: Read + ?Sized>(r: &mut R, declared: u64) -> Result<Header, String> {
    let io = |e: std::io::Error| format!("cannot read the .npy header: {e}");
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(io)?;
    if &pre[..6] != MAGIC {
        return Err("not a .npy array (bad magic bytes)".to_string());
    }
    let (major, minor) = (pre[6], pre[7]);
    let (len, pre_len) = match major {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(io)?;
            (u64::from(u16::from_le_bytes(b)), 10u64)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(io)?;
            (u64::from(u32::from_le_bytes(b)), 12u64)
        }
        _ => return Err(format!(".npy format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are)")),
    };
    let header_bytes = pre_len + len;
    if header_bytes > declared {
        return Err(format!("the .npy header claims {len} bytes but the member holds only {declared} in all"));
    }
    let mut text = Vec::new();
    (&mut *r).take(len).read_to_end(&mut text).map_err(io)?;
    if (text.len() as u64) < len {
        return Err(format!("the .npy header is cut short ({} of {len} bytes)", text.len()));
    }
    let text = std::str::from_utf8(&text).map_err(|_| "the .npy header is not UTF-8 text".to_string())?;
    let (descr, fortran_order, shape) = parse_dict(text)?;
    let descr = parse_descr(&descr)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than this machine can address"))?;
    let data_bytes = count
        .checked_mul(descr.size)
        .ok_or_else(|| format!("shape {shape:?} of {} needs more bytes than this machine can address", descr.text))?;
    let need = (data_bytes as u64).checked_add(header_bytes);
    if need != Some(declared) {
        return Err(format!(
            "shape {shape:?} of {} needs {data_bytes} bytes of data but the member holds {} after its header",
            descr.text,
            declared - header_bytes
        ));
    }
    Ok(Header { descr, fortran_order, shape, count, data_bytes, header_bytes: header_bytes as usize })
}

/// Parse numpy's header dict: `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> Result<(String, bool, Vec<usize>), String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let bad = |what: &str| format!("the .npy header is not a valid dict ({what}): {}", text.trim_end());
    p.ws();
    if !p.eat(b'{') {
        return Err(bad("no opening brace"));
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.ws();
        if !p.eat(b':') {
            return Err(bad("expected ':' after a key"));
        }
        p.ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err("structured (record) dtypes are not supported: save plain arrays".to_string());
                }
                descr = Some(p.string().ok_or_else(|| bad("descr is not a string"))?);
            }
            "fortran_order" => {
                fortran = Some(if p.word("True") {
                    true
                } else if p.word("False") {
                    false
                } else {
                    return Err(bad("fortran_order is not True or False"));
                });
            }
            "shape" => shape = Some(p.tuple().ok_or_else(|| bad("shape is not a tuple of non-negative integers"))?),
            other => return Err(bad(&format!("unexpected key '{other}'"))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            if p.eat(b'}') {
                break;
            }
            return Err(bad("expected ',' or '}'"));
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(bad("text after the closing brace"));
    }
    match (descr, fortran, shape) {
        (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
        _ => Err(bad("descr, fortran_order and shape are all required")),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }
    fn word(&mut self, w: &str) -> bool {
        let hit = self.s[self.i..].starts_with(w.as_bytes());
        if hit {
            self.i += w.len();
        }
        hit
    }
    /// A '...' or "..." literal without escapes (numpy never writes any).
    fn string(&mut self) -> Option<String> {
        let q = self.peek().filter(|&c| c == b'\'' || c == b'"')?;
        self.i += 1;
        let start = self.i;
        let len = self.s[start..].iter().position(|&c| c == q)?;
        self.i = start + len + 1;
        std::str::from_utf8(&self.s[start..start + len]).ok().map(str::to_string)
    }
    /// `()`, `(5,)`, `(3, 4)`, `(3, 4,)`.
    fn tuple(&mut self) -> Option<Vec<usize>> {
        if !self.eat(b'(') {
            return None;
        }
        let mut v = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Some(v);
            }
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
            v.push(digits.parse::<usize>().ok()?);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                return self.eat(b')').then_some(v);
            }
        }
    }
}

/// `<f4`, `>i8`, `|u1`, `<U12`, `|S5`, `=f8`.
fn parse_descr(d: &str) -> Result<Descr, String> {
    let unsupported = || format!("dtype '{d}' is not supported (floats, integers and strings are)");
    let bytes = d.as_bytes();
    let (order, rest) = match bytes.first() {
        Some(b'<' | b'>' | b'|' | b'=') => (bytes[0], &d[1..]),
        _ => (b'=', d),
    };
    let mut chars = rest.chars();
    let kind = match chars.next() {
        Some('f') => Kind::Float,
        Some('i') => Kind::Int,
        Some('u') => Kind::Uint,
        Some('U') => Kind::Unicode,
        Some('S' | 'a') => Kind::Bytes,
        _ => return Err(unsupported()),
    };
    let n: usize = chars.as_str().parse().map_err(|_| unsupported())?;
    let size = match kind {
        Kind::Float if [2, 4, 8].contains(&n) => n,
        Kind::Int | Kind::Uint if [1, 2, 4, 8].contains(&n) => n,
        Kind::Unicode => n.checked_mul(4).ok_or_else(unsupported)?,
        Kind::Bytes => n,
        _ => return Err(unsupported()),
    };
    Ok(Descr { kind, size, big_endian: order == b'>', text: d.to_string() })
}

/// Elements per read when decoding (bounded memory besides the result).
const CHUNK_BYTES: usize = 1 << 20;

/// Read `h.count` elements of `h.descr.size` bytes each and map each element's
/// bytes with `f`. The result is reserved up front (its size was checked against
/// the declared member size), with a clean error if that memory is not available.
pub fn read_elements<T, R: Read + ?Sized>(
    r: &mut R,
    h: &Header,
    mut f: impl FnMut(&[u8]) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut out: Vec<T> = Vec::new();
    out.try_reserve_exact(h.count)
        .map_err(|_| format!("cannot allocate {} elements for shape {:?}", h.count, h.shape))?;
    let size = h.descr.size;
    if size == 0 {
        // `<U0` / `|S0`: every element is empty.
        for _ in 0..h.count {
            out.push(f(&[])?);
        }
        return Ok(out);
    }
    let per_chunk = (CHUNK_BYTES / size).max(1);
    let mut buf = vec![0u8; per_chunk.min(h.count).max(1) * size];
    let mut left = h.count;
    while left > 0 {
        let k = left.min(per_chunk);
        let chunk = &mut buf[..k * size];
        r.read_exact(chunk).map_err(|e| format!("cannot read the data: {e}"))?;
        for e in chunk.chunks_exact(size) {
            out.push(f(e)?);
        }
        left -= k;
    }
    Ok(out)
}

/// Decode one numeric element (any float/int width, either byte order) as f64;
/// an error for a string dtype.
pub fn to_f64(d: &Descr, e: &[u8]) -> Result<f64, String> {
    let b = le_word(d, e).ok_or_else(|| format!("dtype {} is not numeric", d.text))?;
    Ok(match (d.kind, d.size) {
        (Kind::Float, 2) => f64::from(half::f16::from_le_bytes([b[0], b[1]])),
        (Kind::Float, 4) => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        (Kind::Float, _) => f64::from_le_bytes(b),
        (Kind::Int, n) => sign_extend(u64::from_le_bytes(b), n) as f64,
        (_, _) => u64::from_le_bytes(b) as f64,
    })
}

/// Decode one integer element as i64; `None` for a float or string element or a u64 above i64::MAX.
pub fn to_i64(d: &Descr, e: &[u8]) -> Option<i64> {
    let raw = u64::from_le_bytes(le_word(d, e)?);
    match d.kind {
        Kind::Int => Some(sign_extend(raw, d.size)),
        Kind::Uint => i64::try_from(raw).ok(),
        _ => None,
    }
}

/// A numeric element's bytes as a little-endian 8-byte word (zero-extended);
/// `None` unless the dtype is numeric and the element is its size.
fn le_word(d: &Descr, e: &[u8]) -> Option<[u8; 8]> {
    let numeric = matches!(d.kind, Kind::Float | Kind::Int | Kind::Uint);
    if !numeric || e.len() != d.size || e.len() > 8 || e.is_empty() {
        return None;
    }
    let mut b = [0u8; 8];
    b[..e.len()].copy_from_slice(e);
    if d.big_endian {
        b[..e.len()].reverse();
    }
    Some(b)
}

fn sign_extend(raw: u64, bytes: usize) -> i64 {
    let shift = 64 - 8 * bytes as u32;
    ((raw << shift) as i64) >> shift
}

/// Decode one string element (unicode or bytes), trailing NULs removed.
pub fn to_string(d: &Descr, e: &[u8]) -> Result<String, String> {
    match d.kind {
        Kind::Unicode => {
            let mut s = String::new();
            for c in e.chunks_exact(4) {
                let raw = [c[0], c[1], c[2], c[3]];
                let u = if d.big_endian { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) };
                s.push(char::from_u32(u).ok_or_else(|| format!("{u:#x} is not a unicode character"))?);
            }
            Ok(s.trim_end_matches('\0').to_string())
        }
        _ => {
            let end = e.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            Ok(String::from_utf8_lossy(&e[..end]).into_owned())
        }
    }
}
