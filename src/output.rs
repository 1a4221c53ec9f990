//! Writing output without losing anything: one rule for every command that
//! writes. An existing file is replaced only with `--force` (`refuse_existing`);
//! every file is written to a temporary name in its own directory and renamed
//! over the target (`write_atomic`), so a kill leaves the old file or the new
//! one, never half of either; a directory that a long command writes into is
//! owned by one process at a time (`DirLock`), and temporaries a killed
//! process left behind are removed by the next owner (`remove_stale_temps`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside an owned directory (ignored when asking whether it is empty).
pub const LOCK_FILE: &str = ".cimnet.lock";

/// Marker of the temporary names `tmp_path` gives.
const TMP_MARK: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("{dir} is in use by another cimnet process{}; wait for it to finish (or stop it), or choose another directory",
        holder.as_ref().map(|h| format!(" (pid {h})")).unwrap_or_default())]
    Locked { dir: PathBuf, holder: Option<String> },
    #[error("{dir} is not empty ({example} and {more} more) and holds no cimnet {what}; choose a new or empty directory, or pass --force to write into it")]
    NotEmpty { dir: PathBuf, what: &'static str, example: String, more: usize },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.to_path_buf(), source }
}

/// Refuse to replace an existing `path` unless `force`.
pub fn refuse_existing(path: &Path, force: bool) -> Result<(), OutputError> {
    // symlink_metadata: a dangling link is something that exists, too.
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(OutputError::Exists(path.to_path_buf()));
    }
    Ok(())
}

/// The temporary name `write_atomic` (and the npz writer) use for `path`: a
/// hidden file in the same directory, so the final rename never crosses file systems.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}{TMP_MARK}{}", std::process::id()))
}

/// Write `bytes` to `path` through a temporary file and a rename (replacing
/// `path` if it exists: callers decide that with `refuse_existing` first).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `refuse_existing` then `write_atomic`.
pub fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<(), OutputError> {
    refuse_existing(path, force)?;
    write_atomic(path, bytes).map_err(io_err(path))
}

/// Remove the temporaries (`.NAME.tmp-PID`) that a killed process left in `dir`;
/// call it only while holding `dir`'s lock. Returns what was removed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>, OutputError> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(OutputError::Io { path: dir.to_path_buf(), source: e }),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(TMP_MARK) && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// What `dir` holds besides the lock file (sorted); empty if it does not exist.
pub fn entries(dir: &Path) -> Result<Vec<String>, OutputError> {
    let mut names = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(it) => {
            for e in it {
                let name = e.map_err(io_err(dir))?.file_name().to_string_lossy().into_owned();
                if name != LOCK_FILE {
                    names.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(OutputError::Io { path: dir.to_path_buf(), source: e }),
    }
    names.sort();
    Ok(names)
}

/// Refuse a directory that holds anything (but a lock file); `what` names what
/// would have made it acceptable ("run", "grid").
pub fn require_empty(dir: &Path, what: &'static str) -> Result<(), OutputError> {
    let names = entries(dir)?;
    match names.first() {
        None => Ok(()),
        Some(first) => {
            Err(OutputError::NotEmpty { dir: dir.to_path_buf(), what, example: first.clone(), more: names.len() - 1 })
        }
    }
}

/// Exclusive advisory lock on a directory, held until dropped (the OS releases
/// it when the process dies, so a kill never leaves a directory locked).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub dir: PathBuf,
}

impl DirLock {
    /// Create `dir` if needed and lock it, or fail at once naming the holder.
    pub fn acquire(dir: &Path) -> Result<DirLock, OutputError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = Some(text.trim().to_string()).filter(|s| !s.is_empty());
                return Err(OutputError::Locked { dir: dir.to_path_buf(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(OutputError::Io { path, source: e }),
        }
        // The holder's pid, for the message a second process prints.
        let write_pid = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            write!(f, "{}", std::process::id())?;
            f.flush()
        };
        write_pid(&mut file).map_err(io_err(&path))?;
        Ok(DirLock { _file: file, dir: dir.to_path_buf() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(tmp.path()).unwrap();
        match DirLock::acquire(tmp.path()) {
            Err(OutputError::Locked { dir, holder }) => {
                assert_eq!(dir, tmp.path());
                assert_eq!(holder, Some(std::process::id().to_string()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        DirLock::acquire(tmp.path()).unwrap();
    }

    #[test]
    fn existing_files_are_kept_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.txt");
        write_new(&p, b"one", false).unwrap();
        assert!(matches!(write_new(&p, b"two", false), Err(OutputError::Exists(_))));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_new(&p, b"two", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".model.safetensors.tmp-12345"), b"half").unwrap();
        std::fs::write(tmp.path().join("model.safetensors"), b"whole").unwrap();
        std::fs::write(tmp.path().join("notes.tmp-1"), b"user's").unwrap();
        let removed = remove_stale_temps(tmp.path()).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(entries(tmp.path()).unwrap(), vec!["model.safetensors", "notes.tmp-1"]);
    }
}
