//! Secret keys kept in the data directory: 32 random bytes, created on first use (0600).

use std::path::Path;

/// The 32-byte key in `path`, created with fresh random bytes if the file does not exist.
///
/// # Errors
/// If the file cannot be read or created, or does not hold 32 bytes.
pub fn load_or_create(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .as_slice()
            .try_into()
            .map_err(|_| std::io::Error::other(format!("{} must hold 32 bytes", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(std::io::Error::other)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            std::io::Write::write_all(&mut options.open(path)?, &key)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}
