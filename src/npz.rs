//! Reading and writing NumPy `.npz` archives (through the `npyz` crate), with
//! errors that name the file and the array. Arrays are C-order, row-major.

use std::io;
use std::path::{Path, PathBuf};

use npyz::npz::{NpzArchive, NpzWriter};
use npyz::{DType, TypeChar, WriterBuilder};

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

/// What an archive reads from: a file, or bytes embedded in the binary.
pub trait ReadSeek: io::Read + io::Seek {}
impl<R: io::Read + io::Seek> ReadSeek for R {}

/// An npz archive opened for reading.
pub struct NpzIn {
    path: PathBuf,
    archive: NpzArchive<Box<dyn ReadSeek>>,
}

impl NpzIn {
    pub fn open(path: &Path) -> Result<Self, NpzError> {
        let open =
            |p: &Path| -> io::Result<Box<dyn ReadSeek>> { Ok(Box::new(io::BufReader::new(std::fs::File::open(p)?))) };
        let archive = open(path)
            .and_then(NpzArchive::new)
            .map_err(|source| NpzError::Open { file: path.to_path_buf(), source })?;
        Ok(NpzIn { path: path.to_path_buf(), archive })
    }

    /// An archive held in memory (e.g. `include_bytes!`); `name` stands in for the path in errors.
    pub fn from_bytes(name: &str, bytes: &'static [u8]) -> Result<Self, NpzError> {
        let path = PathBuf::from(name);
        let reader: Box<dyn ReadSeek> = Box::new(io::Cursor::new(bytes));
        let archive = NpzArchive::new(reader).map_err(|source| NpzError::Open { file: path.clone(), source })?;
        Ok(NpzIn { path, archive })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.archive.array_names().map(str::to_string).collect();
        v.sort();
        v
    }

    pub fn has(&self, name: &str) -> bool {
        self.archive.array_names().any(|n| n == name)
    }

    /// Read a floating-point array (f16, f32 or f64 on disk) as f64, or `None` if absent.
    pub fn read_float_opt(&mut self, name: &str) -> Result<Option<Array<f64>>, NpzError> {
        let path = self.path.clone();
        let io_err = |e: io::Error| NpzError::Array { file: path.clone(), name: name.to_string(), msg: e.to_string() };
        let bad = |name: &str, msg: String| NpzError::Array { file: path.clone(), name: name.to_string(), msg };
        let Some(file) = self.archive.by_name(name).map_err(&io_err)? else { return Ok(None) };
        if file.order() != npyz::Order::C {
            return Err(bad(
                name,
                "Fortran-ordered arrays are not supported: save it with np.ascontiguousarray".to_string(),
            ));
        }
        let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
        let dtype = file.dtype();
        let data: Vec<f64> = match &dtype {
            DType::Plain(ts) => match (ts.type_char(), ts.size_field()) {
                (TypeChar::Float, 8) => file.into_vec::<f64>().map_err(&io_err)?,
                (TypeChar::Float, 4) => file.into_vec::<f32>().map_err(&io_err)?.into_iter().map(f64::from).collect(),
                (TypeChar::Float, 2) => {
                    file.into_vec::<half::f16>().map_err(&io_err)?.into_iter().map(f64::from).collect()
                }
                (TypeChar::Int, 4) => file.into_vec::<i32>().map_err(&io_err)?.into_iter().map(f64::from).collect(),
                (TypeChar::Int, 8) => file.into_vec::<i64>().map_err(&io_err)?.into_iter().map(|x| x as f64).collect(),
                _ => return Err(bad(name, format!("dtype {ts} is not a float type"))),
            },
            other => return Err(bad(name, format!("unsupported dtype {other:?}"))),
        };
        Ok(Some(Array::new(shape, data)))
    }

    /// Read a floating-point array as f32 (features are stored as f32; this halves the
    /// memory of reading a large MOSEI array through f64), or `None` if absent.
    pub fn read_f32_opt(&mut self, name: &str) -> Result<Option<Array<f32>>, NpzError> {
        let path = self.path.clone();
        let io_err = |e: io::Error| NpzError::Array { file: path.clone(), name: name.to_string(), msg: e.to_string() };
        let Some(file) = self.archive.by_name(name).map_err(&io_err)? else { return Ok(None) };
        let is_f32 = file.order() == npyz::Order::C
            && matches!(&file.dtype(), DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 4);
        if is_f32 {
            let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
            let data = file.into_vec::<f32>().map_err(&io_err)?;
            return Ok(Some(Array::new(shape, data)));
        }
        drop(file);
        Ok(self.read_float_opt(name)?.map(|a| Array::new(a.shape, a.data.into_iter().map(|x| x as f32).collect())))
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
        let path = self.path.clone();
        let io_err = |e: io::Error| NpzError::Array { file: path.clone(), name: name.to_string(), msg: e.to_string() };
        let bad = |name: &str, msg: String| NpzError::Array { file: path.clone(), name: name.to_string(), msg };
        let Some(file) = self.archive.by_name(name).map_err(&io_err)? else { return Ok(None) };
        let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
        let dtype = file.dtype();
        let data: Vec<i64> = match &dtype {
            DType::Plain(ts) => match (ts.type_char(), ts.size_field()) {
                (TypeChar::Int, 8) => file.into_vec::<i64>().map_err(&io_err)?,
                (TypeChar::Int, 4) => file.into_vec::<i32>().map_err(&io_err)?.into_iter().map(i64::from).collect(),
                (TypeChar::Int, 2) => file.into_vec::<i16>().map_err(&io_err)?.into_iter().map(i64::from).collect(),
                (TypeChar::Int, 1) => file.into_vec::<i8>().map_err(&io_err)?.into_iter().map(i64::from).collect(),
                (TypeChar::Uint, 8) => file.into_vec::<u64>().map_err(&io_err)?.into_iter().map(|x| x as i64).collect(),
                (TypeChar::Uint, 4) => file.into_vec::<u32>().map_err(&io_err)?.into_iter().map(i64::from).collect(),
                (TypeChar::Uint, 2) => file.into_vec::<u16>().map_err(&io_err)?.into_iter().map(i64::from).collect(),
                (TypeChar::Uint, 1) => file.into_vec::<u8>().map_err(&io_err)?.into_iter().map(i64::from).collect(),
                (TypeChar::Float, _) => {
                    drop(file);
                    let a = self.read_float(name)?;
                    if let Some(x) = a.data.iter().find(|x| x.fract() != 0.0 || !x.is_finite()) {
                        return Err(bad(name, format!("expected integers, found {x}")));
                    }
                    return Ok(Some(Array::new(a.shape, a.data.into_iter().map(|x| x as i64).collect())));
                }
                _ => return Err(bad(name, format!("dtype {ts} is not an integer type"))),
            },
            other => return Err(bad(name, format!("unsupported dtype {other:?}"))),
        };
        Ok(Some(Array::new(shape, data)))
    }

    pub fn read_int(&mut self, name: &str) -> Result<Array<i64>, NpzError> {
        match self.read_int_opt(name)? {
            Some(a) => Ok(a),
            None => Err(self.missing(name)),
        }
    }

    /// Read a string array (numpy unicode `<U..` or bytes `|S..`), or `None` if absent.
    pub fn read_strings_opt(&mut self, name: &str) -> Result<Option<Vec<String>>, NpzError> {
        let path = self.path.clone();
        let io_err = |e: io::Error| NpzError::Array { file: path.clone(), name: name.to_string(), msg: e.to_string() };
        let bad = |name: &str, msg: String| NpzError::Array { file: path.clone(), name: name.to_string(), msg };
        let Some(file) = self.archive.by_name(name).map_err(&io_err)? else { return Ok(None) };
        let dtype = file.dtype();
        let strings = match &dtype {
            DType::Plain(ts) if ts.type_char() == TypeChar::UnicodeStr => {
                let v: Vec<Vec<char>> = file.into_vec().map_err(&io_err)?;
                v.into_iter().map(|cs| cs.into_iter().collect::<String>()).collect()
            }
            DType::Plain(ts) if ts.type_char() == TypeChar::ByteStr => {
                let v: Vec<Vec<u8>> = file.into_vec().map_err(&io_err)?;
                v.into_iter().map(|bs| String::from_utf8_lossy(&bs).into_owned()).collect()
            }
            other => return Err(bad(name, format!("expected a string array, found dtype {other:?}"))),
        };
        Ok(Some(strings))
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
