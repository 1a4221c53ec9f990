//! Reading and writing NumPy `.npz` archives (through the `npyz` crate), with
//! errors that name the file and the array. Arrays are C-order, row-major.

use std::io;
use std::path::{Path, PathBuf};

use std::io::Read;

use npyz::npz::NpzWriter;
use npyz::{DType, WriterBuilder};

use crate::npy;

#[derive(Debug, thiserror::Error)]
pub enum NpzError {
    #[error("{file}: cannot read as an npz archive: {source}")]
    Open { file: PathBuf, source: io::Error },
    #[error("{file}: array '{name}' is missing (the file has: {present})")]
    Missing { file: PathBuf, name: String, present: String },
    #[error("{file}: array '{name}': {msg}")]
    Array { file: PathBuf, name: String, msg: String },
    #[error("{file}: cannot write: {source}")]
    Write { file: PathBuf, source: io::Error },
}

/// An n-d array read from or written to an npz file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T> Array<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Array { shape, data }
    }
}

/// What an archive reads from: a file, or bytes in memory.
pub trait ReadSeek: io::Read + io::Seek {}
impl<R: io::Read + io::Seek> ReadSeek for R {}

/// The largest ratio of uncompressed to compressed size deflate can reach
/// (about 1032:1), with slack: a member declaring more is refused before its
/// data are read.
const MAX_DEFLATE_RATIO: u64 = 1040;

/// An npz archive opened for reading. Every member read is checked before its
/// values are returned: its declared sizes against the file's size, the .npy
/// header's shape and dtype against the declared size (see [`crate::npy`]),
/// and the zip CRC-32 of the bytes read, so a corrupt member is an error,
/// never data.
pub struct NpzIn {
    path: PathBuf,
    archive: zip::ZipArchive<Box<dyn ReadSeek>>,
    /// Bytes of the whole archive.
    size: u64,
}

impl NpzIn {
    pub fn open(path: &Path) -> Result<Self, NpzError> {
        let open_err = |source: io::Error| NpzError::Open { file: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        let reader: Box<dyn ReadSeek> = Box::new(io::BufReader::new(file));
        Self::from_reader(path.to_path_buf(), reader, size)
    }

    /// An archive held in memory (e.g. `include_bytes!`); `name` stands in for the path in errors.
    pub fn from_bytes(name: &str, bytes: impl Into<std::borrow::Cow<'static, [u8]>>) -> Result<Self, NpzError> {
        let bytes: std::borrow::Cow<'static, [u8]> = bytes.into();
        let size = bytes.len() as u64;
        Self::from_reader(PathBuf::from(name), Box::new(io::Cursor::new(bytes)), size)
    }

    fn from_reader(path: PathBuf, reader: Box<dyn ReadSeek>, size: u64) -> Result<Self, NpzError> {
        let archive = zip::ZipArchive::new(reader)
            .map_err(|e| NpzError::Open { file: path.clone(), source: io::Error::other(e) })?;
        Ok(NpzIn { path, archive, size })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Array names (member names without `.npy`), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.archive.file_names().filter_map(|n| n.strip_suffix(".npy")).map(str::to_string).collect();
        v.sort();
        v
    }

    /// Every member's name as stored (`x.npy`, and anything else the archive holds), sorted.
    pub fn member_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.archive.file_names().map(str::to_string).collect();
        v.sort();
        v
    }

    pub fn has(&self, name: &str) -> bool {
        let member = format!("{name}.npy");
        self.archive.file_names().any(|n| n == member)
    }

    /// Read array `name` with `f` deciding, from the checked header, how to decode
    /// it; `None` if absent. The member's CRC is verified after the last byte.
    fn read_member<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut dyn io::Read, &npy::Header) -> Result<T, String>,
    ) -> Result<Option<T>, NpzError> {
        let bad = |msg: String| NpzError::Array { file: self.path.clone(), name: name.to_string(), msg };
        if !self.has(name) {
            return Ok(None);
        }
        let mut member = match self.archive.by_name(&format!("{name}.npy")) {
            Ok(m) => m,
            Err(e) => return Err(bad(format!("cannot open the member: {e}"))),
        };
        let (declared, packed) = (member.size(), member.compressed_size());
        if packed > self.size {
            return Err(bad(format!("declares {packed} compressed bytes but the whole file has {}", self.size)));
        }
        let fits = match member.compression() {
            zip::CompressionMethod::Stored => declared == packed,
            _ => declared <= packed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024),
        };
        if !fits {
            return Err(bad(format!("declares {declared} bytes uncompressed from {packed} compressed: impossible")));
        }
        let header = npy::read_header(&mut member, declared).map_err(&bad)?;
        let value = f(&mut member, &header).map_err(&bad)?;
        // One more read past the declared end: zip checks the CRC-32 there, and
        // data beyond the declared size would show up.
        let mut probe = [0u8; 1];
        match member.read(&mut probe) {
            Ok(0) => Ok(Some(value)),
            Ok(_) => Err(bad(format!("holds more than its declared {declared} bytes"))),
            Err(e) => Err(bad(format!("the zip CRC-32 check failed, the member is corrupt ({e})"))),
        }
    }

    /// Read a numeric array with each element decoded by `f`; C order required beyond 1-d.
    fn read_numeric<T>(
        &mut self,
        name: &str,
        f: impl Fn(&npy::Descr, &[u8]) -> Result<T, String>,
    ) -> Result<Option<Array<T>>, NpzError> {
        self.read_member(name, |r, h| {
            if h.fortran_order && h.shape.len() > 1 {
                return Err("Fortran-ordered arrays are not supported: save it with np.ascontiguousarray".into());
            }
            if matches!(h.descr.kind, npy::Kind::Unicode | npy::Kind::Bytes) {
                return Err(format!("dtype {} is a string type, expected numbers", h.descr.text));
            }
            let data = npy::read_elements(r, h, |e| f(&h.descr, e))?;
            Ok(Array { shape: h.shape.clone(), data })
        })
    }

    /// Read a numeric array (any float or integer width on disk) as f64, or `None` if absent.
    pub fn read_float_opt(&mut self, name: &str) -> Result<Option<Array<f64>>, NpzError> {
        self.read_numeric(name, npy::to_f64)
    }

    /// Read a numeric array as f32 (features are stored as f32; this halves the
    /// memory of reading a large MOSEI array through f64), or `None` if absent.
    pub fn read_f32_opt(&mut self, name: &str) -> Result<Option<Array<f32>>, NpzError> {
        self.read_numeric(name, |d, e| npy::to_f64(d, e).map(|x| x as f32))
    }

    /// Read a floating-point array as f32; a clear error if it is absent.
    pub fn read_f32(&mut self, name: &str) -> Result<Array<f32>, NpzError> {
        match self.read_f32_opt(name)? {
            Some(a) => Ok(a),
            None => Err(self.missing(name)),
        }
    }

    /// Read a floating-point array as f64; a clear error if it is absent.
    pub fn read_float(&mut self, name: &str) -> Result<Array<f64>, NpzError> {
        match self.read_float_opt(name)? {
            Some(a) => Ok(a),
            None => Err(self.missing(name)),
        }
    }

    /// Read an integer array (any signed or unsigned width; whole-valued floats accepted) as i64.
    pub fn read_int_opt(&mut self, name: &str) -> Result<Option<Array<i64>>, NpzError> {
        self.read_numeric(name, |d, e| match npy::to_i64(d, e) {
            Some(i) => Ok(i),
            None if d.kind == npy::Kind::Float => {
                let x = npy::to_f64(d, e)?;
                if x.fract() != 0.0 || !x.is_finite() || x.abs() > 2f64.powi(53) {
                    return Err(format!("expected integers, found {x}"));
                }
                Ok(x as i64)
            }
            None => Err(format!("expected integers, found a value above {}", i64::MAX)),
        })
    }

    pub fn read_int(&mut self, name: &str) -> Result<Array<i64>, NpzError> {
        match self.read_int_opt(name)? {
            Some(a) => Ok(a),
            None => Err(self.missing(name)),
        }
    }

    /// Read a string array (numpy unicode `<U..` or bytes `|S..`), or `None` if absent.
    pub fn read_strings_opt(&mut self, name: &str) -> Result<Option<Vec<String>>, NpzError> {
        self.read_member(name, |r, h| {
            if !matches!(h.descr.kind, npy::Kind::Unicode | npy::Kind::Bytes) {
                return Err(format!("expected a string array, found dtype {}", h.descr.text));
            }
            npy::read_elements(r, h, |e| npy::to_string(&h.descr, e))
        })
    }

    fn missing(&self, name: &str) -> NpzError {
        NpzError::Missing { file: self.path.clone(), name: name.to_string(), present: self.names().join(", ") }
    }
}

/// An npz archive being written. It goes to a temporary file next to the
/// target and is renamed into place by `finish`, so a crash never leaves a
/// torn file and an existing file is only replaced by a complete one.
pub struct NpzOut {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<NpzWriter<io::BufWriter<std::fs::File>>>,
}

impl NpzOut {
    pub fn create(path: &Path) -> Result<Self, NpzError> {
        let tmp = tmp_path(path);
        let writer = NpzWriter::create(&tmp).map_err(|source| NpzError::Write { file: path.to_path_buf(), source })?;
        Ok(NpzOut { path: path.to_path_buf(), tmp, writer: Some(writer) })
    }

    fn options() -> zip::write::FileOptions {
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated)
    }

    fn put<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
        &mut self,
        name: &str,
        shape: &[usize],
        data: &[T],
    ) -> Result<(), NpzError> {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "npz array {name}: shape and data disagree");
        let file = self.path.clone();
        let werr = |source: io::Error| NpzError::Write { file: file.clone(), source };
        let writer = self.writer.as_mut().expect("NpzOut used after finish");
        let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = writer
            .array::<T>(name, Self::options())
            .map_err(&werr)?
            .default_dtype()
            .shape(&shape64)
            .begin_nd()
            .map_err(&werr)?;
        w.extend(data.iter().copied()).map_err(&werr)?;
        w.finish().map_err(&werr)
    }

    pub fn write_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<(), NpzError> {
        self.put(name, shape, data)
    }

    pub fn write_f64(&mut self, name: &str, shape: &[usize], data: &[f64]) -> Result<(), NpzError> {
        self.put(name, shape, data)
    }

    pub fn write_i32(&mut self, name: &str, shape: &[usize], data: &[i32]) -> Result<(), NpzError> {
        self.put(name, shape, data)
    }

    /// Write a 1-d array of unicode strings (numpy `<U{max_len}`).
    pub fn write_strings(&mut self, name: &str, strings: &[String]) -> Result<(), NpzError> {
        let file = self.path.clone();
        let werr = |source: io::Error| NpzError::Write { file: file.clone(), source };
        let width = strings.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(1);
        let dtype = DType::Plain(format!("<U{width}").parse().expect("valid unicode type string"));
        let writer = self.writer.as_mut().expect("NpzOut used after finish");
        let mut w = writer
            .array::<[char]>(name, Self::options())
            .map_err(&werr)?
            .dtype(dtype)
            .shape(&[strings.len() as u64])
            .begin_nd()
            .map_err(&werr)?;
        for s in strings {
            let chars: Vec<char> = s.chars().collect();
            w.push(&chars[..]).map_err(&werr)?;
        }
        w.finish().map_err(&werr)
    }

    /// Close the archive and move it into place.
    pub fn finish(mut self) -> Result<(), NpzError> {
        let file = self.path.clone();
        let werr = |source: io::Error| NpzError::Write { file: file.clone(), source };
        let writer = self.writer.take().expect("NpzOut finished twice");
        let mut zip = writer;
        let inner = zip.zip_writer().finish().map_err(|e| werr(io::Error::other(e)))?;
        let f = inner.into_inner().map_err(|e| werr(e.into_error()))?;
        f.sync_all().map_err(&werr)?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path).map_err(&werr)
    }
}

impl Drop for NpzOut {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Temporary names live in src/output.rs with the rest of the no-loss rules.
pub use crate::output::tmp_path;
