//! Files a SQLite store creates (its directory, the database file, the step log's segments)
//! are its owner's only: the audit trail is in them.

use std::path::Path;

/// Creates `dir` (and its missing parents) readable by its owner only (0700); directories
/// that exist are left as they are.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates the file at `path` if it does not exist, readable and writable by its owner only
/// (0600); a file that exists is left as it is.
pub(crate) fn private_file(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
