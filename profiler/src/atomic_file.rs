//! Output files appear under their final name only when complete: each is
//! written to a temporary file in the same directory and renamed into place.

use std::{
    io::{BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use crate::{Error, Result};

/// Write `path` atomically with the bytes produced by `fill`.
pub fn write_atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let err = |reason: String| Error::WriteOutput { path: path.to_owned(), reason };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".tailprof-")
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(|e| err(e.to_string()))?;
    {
        let mut out = BufWriter::new(tmp.as_file());
        fill(&mut out).map_err(|e| err(e.to_string()))?;
        out.flush().map_err(|e| err(e.to_string()))?;
    }
    // Reports are meant to be read by whoever runs the viewer: 0644, not tempfile's 0600.
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(|e| err(e.to_string()))?;
    tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
    tmp.persist(path).map_err(|e| err(e.error.to_string()))?;
    Ok(())
}

/// Check that `dir` exists (creating it if needed) and that files can be
/// created in it, before any capture work starts.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    let err = |reason: String| Error::OutputDir { path: dir.to_owned(), reason };
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let probe = tempfile::Builder::new().prefix(".tailprof-probe-").tempfile_in(dir).map_err(|e| err(e.to_string()))?;
    probe.close().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        write_atomically(&path, |w| w.write_all(b"hello")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_fill_leaves_nothing_under_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        let r = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("interrupted"))
        });
        assert!(r.is_err());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
