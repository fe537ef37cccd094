//! A service's home directory: small JSON files for configuration and keys. Secret files are
//! written with mode 0600 through a temporary file and a rename, so a crash never leaves a
//! half-written key behind.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid: {message}")]
    Parse { path: String, message: String },
}

fn io(path: &Path, source: std::io::Error) -> FileError {
    FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` atomically and durably, readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    smpx_os::fs::write_atomic(path, bytes, smpx_os::fs::Access::Private)
        .map_err(|e| io(&e.path, e.source))
}

/// Reads JSON from `path`, or creates it with `make()` if it does not exist.
pub fn load_or_create<T, F>(path: &Path, make: F) -> Result<T, FileError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> T,
{
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| FileError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let v = make();
            let bytes = serde_json::to_vec_pretty(&v).map_err(|e| FileError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            write_private(path, &bytes)?;
            Ok(v)
        }
        Err(e) => Err(io(path, e)),
    }
}

/// Reads a 32-byte secret kept as a hex JSON string at `path`, creating the file (0600) from
/// `make()` the first time: the form every service keeps its signing key in. `what` names the
/// secret in the error (`not a 32-byte hex key`). The hex text is wiped once decoded, and the
/// bytes are returned in a wrapper that wipes them when dropped.
pub fn load_or_create_secret32<F>(
    path: &Path,
    what: &str,
    make: F,
) -> Result<Zeroizing<[u8; 32]>, FileError>
where
    F: FnOnce() -> [u8; 32],
{
    let text = Zeroizing::new(load_or_create::<String, _>(path, || {
        let fresh = Zeroizing::new(make());
        hex::encode(fresh.as_slice())
    })?);
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.as_bytes(), bytes.as_mut_slice()).map_err(|_| FileError::Parse {
        path: path.display().to_string(),
        message: format!("not a 32-byte hex {what}"),
    })?;
    Ok(bytes)
}

/// Reads JSON from `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, FileError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| FileError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Reads a bearer token from `path`, creating a fresh one (0600) if the file does not exist.
pub fn load_or_create_token(path: &Path) -> Result<String, FileError> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => Err(FileError::Parse {
            path: path.display().to_string(),
            message: "the token file is empty".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = crate::Token::generate().as_str().to_owned();
            write_private(path, t.as_bytes())?;
            Ok(t)
        }
        Err(e) => Err(io(path, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_and_is_private() {
        let dir = std::env::temp_dir().join(format!("smpx-files-{}", std::process::id()));
        let p = dir.join("k.json");
        let _ = std::fs::remove_file(&p);
        let a: Vec<u8> = load_or_create(&p, || vec![1, 2, 3]).unwrap();
        let b: Vec<u8> = load_or_create(&p, || vec![9]).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A secret: created once, the same bytes after; a short or non-hex one is refused.
        let k = dir.join("key");
        let _ = std::fs::remove_file(&k);
        let a = load_or_create_secret32(&k, "key", || [7; 32]).unwrap();
        let b = load_or_create_secret32(&k, "key", || [9; 32]).unwrap();
        assert_eq!((*a, *b), ([7; 32], [7; 32]));
        std::fs::write(&k, b"\"0707\"").unwrap();
        let e = load_or_create_secret32(&k, "key", || [9; 32]).unwrap_err();
        assert!(e.to_string().contains("not a 32-byte hex key"), "{e}");
        std::fs::write(&p, b"{not json").unwrap();
        assert!(matches!(load::<Vec<u8>>(&p), Err(FileError::Parse { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
