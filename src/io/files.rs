//! Opening the files a user names (model files, configs, noise and input tensors) as
//! untrusted input: only regular files are opened, so a FIFO never blocks `open` and a
//! directory or device gets an error that says what the path is; small text files are read
//! with a size limit checked before anything is allocated.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The largest JSON file read whole (a config, an index, a tokenizer): tokenizers of
/// large-vocabulary models are tens of MiB.
pub const MAX_JSON_BYTES: u64 = 512 << 20;

/// What a path that is not a regular file is, in words.
fn kind_of(meta: &Metadata) -> &'static str {
    let file_type = meta.file_type();
    if file_type.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    "not a regular file"
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `Err(NotAFile)` unless `meta` is a regular file's.
fn require_regular(path: &Path, what: &str, meta: &Metadata) -> Result<()> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(Error::NotAFile {
            path: path.display().to_string(),
            what: what.to_string(),
            kind: kind_of(meta),
        })
    }
}

/// Opens `path` (`what` it should be, for messages: "config file", "shard") for reading,
/// if it is a regular file after following links. A symbolic-link loop, a missing file or
/// anything else is an error naming the path; nothing blocks.
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    require_regular(path, what, &meta)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Should the path become a FIFO between the check and the open, do not wait for a
        // writer; on a regular file O_NONBLOCK changes nothing.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    require_regular(path, what, &meta)?;
    Ok(file)
}

/// Reads the regular file `path` as UTF-8 text, refusing files over `max_bytes` before
/// reading them.
pub fn read_text(path: &Path, what: &str, max_bytes: u64) -> Result<String> {
    let file = open_regular(path, what)?;
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    if len > max_bytes {
        return Err(Error::TooLarge {
            what: format!("{what} {}", path.display()),
            bytes: len,
            limit_name: "the largest text file tessera reads",
            limit: max_bytes,
        });
    }
    let mut text = String::with_capacity(len as usize);
    // `take`: a file that grows while it is read stops at the limit all the same.
    file.take(max_bytes)
        .read_to_string(&mut text)
        .map_err(|e| io_error(path, e))?;
    Ok(text)
}

/// Whether anything is at `path`: a file, a directory, a FIFO, or a link, even a dangling
/// or looping one. (`Path::is_file` says no to all but the first and hides why.)
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed into place once
/// complete: an interrupted or failed write leaves no partial file under `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = partial_path(path);
    let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, path));
    written.map_err(|e| {
        std::fs::remove_file(&partial).ok();
        io_error(path, e)
    })
}

/// The temporary name [`write_atomically`] writes under: `.NAME.PID.partial` beside `path`
/// (the process id keeps two writers of one path from sharing it).
pub fn partial_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tessera-files-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_directory_is_named_as_one() {
        let dir = scratch("dir");
        let err = open_regular(&dir, "shard").unwrap_err().to_string();
        assert!(
            err.contains("a directory") && err.contains("shard"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = scratch("fifo");
        let fifo = dir.join("model.safetensors");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file system node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = open_regular(&fifo, "shard").unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
        assert!(exists(&fifo));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_an_error_not_a_missing_file() {
        let dir = scratch("loop");
        let a = dir.join("a.json");
        let b = dir.join("b.json");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(exists(&a) && !a.is_file());
        let err = read_text(&a, "config file", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic links"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn oversized_text_is_refused_before_reading() {
        let dir = scratch("big");
        let path = dir.join("config.json");
        std::fs::write(&path, vec![b' '; 4096]).unwrap();
        let err = read_text(&path, "config file", 1024)
            .unwrap_err()
            .to_string();
        assert!(err.contains("4096"), "{err}");
        assert_eq!(read_text(&path, "config file", 4096).unwrap().len(), 4096);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn atomic_writes_leave_no_partial_file() {
        let dir = scratch("atomic");
        let path = dir.join("out.png");
        write_atomically(&path, b"done").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"done");
        assert!(!partial_path(&path).exists());
        let missing = dir.join("no-such-dir").join("out.png");
        assert!(write_atomically(&missing, b"x").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
