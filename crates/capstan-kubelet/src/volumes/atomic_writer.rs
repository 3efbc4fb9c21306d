//! Upstream's atomic writer: a volume's files (configMap, secret, downwardAPI, projected)
//! live in a timestamped directory `..2006_01_02_15_04_05.<n>`; the symlink `..data` names the
//! current one and each user-visible top-level path is a symlink through `..data`. A new
//! payload is written into a fresh directory and `..data` is swapped with one `rename`, so a
//! container reading the volume sees either the old files or the new ones, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";

/// One file of a volume: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files by relative path (`key`, or `dir/key` through items' paths).
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("invalid path: {reason}: {path}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AtomicWriteError + '_ {
    move |error| AtomicWriteError::Io { path: path.to_owned(), error }
}

/// Writes `payload` into `target` (created if missing). Returns whether anything was written:
/// a payload equal to the current one (same paths, bytes and modes) leaves the volume alone.
pub fn write(target: &Path, payload: &Payload) -> Result<bool, AtomicWriteError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    fs::create_dir_all(target).map_err(io_error(target))?;
    let data_link = target.join(DATA_DIR);
    let old_dir_name = fs::read_link(&data_link).ok();
    let old_paths = match &old_dir_name {
        Some(name) => files_under(&target.join(name)).map_err(io_error(target))?,
        None => BTreeSet::new(),
    };
    let unchanged = old_dir_name.as_ref().is_some_and(|name| {
        old_paths.len() == payload.len() && same_files(&target.join(name), payload)
    });
    if !unchanged {
        let new_dir = new_timestamped_dir(target)?;
        if let Err(error) = write_files(&new_dir, payload) {
            let _ = fs::remove_dir_all(&new_dir);
            return Err(error);
        }
        let new_dir_name = new_dir.file_name().map(PathBuf::from).unwrap_or_default();
        let tmp_link = target.join(NEW_DATA_DIR);
        match fs::remove_file(&tmp_link) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(AtomicWriteError::Io { path: tmp_link, error });
            }
            _ => {}
        }
        symlink(&new_dir_name, &tmp_link).map_err(io_error(&tmp_link))?;
        fs::rename(&tmp_link, &data_link).map_err(io_error(&data_link))?;
    }
    // The user-visible paths: one symlink per top-level name, through `..data`.
    let visible: BTreeSet<String> = payload.keys().map(|path| top_level(path)).collect();
    for name in &visible {
        let link = target.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_error(&link))?;
        }
    }
    let stale: BTreeSet<String> = old_paths.iter().map(|path| top_level(path)).collect();
    for name in stale.difference(&visible) {
        let link = target.join(name);
        if fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&link).map_err(io_error(&link))?;
        }
    }
    if !unchanged && let Some(name) = old_dir_name {
        let old_dir = target.join(name);
        fs::remove_dir_all(&old_dir).map_err(io_error(&old_dir))?;
    }
    Ok(!unchanged)
}

/// Upstream's path rules: relative, no `..` element, not starting with `..` (the writer's own
/// names start so).
fn validate_path(path: &str) -> Result<(), AtomicWriteError> {
    let invalid = |reason| Err(AtomicWriteError::InvalidPath { path: path.to_owned(), reason });
    if path.is_empty() {
        return invalid("must not be empty");
    }
    if Path::new(path).is_absolute() {
        return invalid("must be relative path");
    }
    if Path::new(path).components().any(|c| c == Component::ParentDir) {
        return invalid("must not contain '..'");
    }
    if path.starts_with("..") {
        return invalid("must not start with '..'");
    }
    Ok(())
}

fn top_level(path: &str) -> String {
    path.split('/').find(|part| !part.is_empty() && *part != ".").unwrap_or(path).to_owned()
}

/// The files (not directories) under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut files = BTreeSet::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = match fs::read_dir(dir.join(&relative)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.to_string_lossy().into_owned());
            }
        }
    }
    Ok(files)
}

fn same_files(dir: &Path, payload: &Payload) -> bool {
    payload.iter().all(|(path, file)| {
        let full = dir.join(path);
        let mode_matches = fs::metadata(&full)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == file.mode & 0o7777);
        mode_matches && fs::read(&full).is_ok_and(|data| data == file.data)
    })
}

fn write_files(dir: &Path, payload: &Payload) -> Result<(), AtomicWriteError> {
    for (path, file) in payload {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        fs::write(&full, &file.data).map_err(io_error(&full))?;
        fs::set_permissions(&full, fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_error(&full))?;
    }
    Ok(())
}

/// A fresh `..YYYY_MM_DD_HH_MM_SS.<n>` directory (mode 0755, so that any user in the
/// container can traverse it).
fn new_timestamped_dir(target: &Path) -> Result<PathBuf, AtomicWriteError> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let stamp = timestamp(now.as_secs());
    loop {
        let n = u64::from(now.subsec_nanos())
            ^ (u64::from(std::process::id()) << 32)
            ^ SEQUENCE.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let dir = target.join(format!("..{stamp}.{}", n % 10_000_000_000));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_error(&dir))?;
                return Ok(dir);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(AtomicWriteError::Io { path: dir, error }),
        }
    }
}

/// `YYYY_MM_DD_HH_MM_SS` in UTC for Unix seconds (the civil-from-days algorithm).
fn timestamp(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let seconds_of_day = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(path, data, mode)| {
                (path.to_string(), FileProjection { data: data.as_bytes().to_vec(), mode: *mode })
            })
            .collect()
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn timestamped_dirs(target: &Path) -> Vec<String> {
        fs::read_dir(target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("..") && name != DATA_DIR)
            .collect()
    }

    #[test]
    fn writes_swaps_and_removes_stale_paths() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vol");
        let first = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]);
        assert!(write(&target, &first).unwrap());
        assert_eq!(read(&target.join("a")), "1");
        assert_eq!(read(&target.join("sub/b")), "2");
        assert_eq!(fs::read_link(target.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(fs::read_link(target.join("sub")).unwrap(), Path::new("..data/sub"));
        let mode = fs::metadata(target.join("sub/b")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let data_before = fs::read_link(target.join(DATA_DIR)).unwrap();

        // The same payload again: nothing is rewritten.
        assert!(!write(&target, &first).unwrap());
        assert_eq!(fs::read_link(target.join(DATA_DIR)).unwrap(), data_before);

        // A changed payload: a new directory, the old one gone, `sub` no longer visible.
        let second = payload(&[("a", "3", 0o644), ("c", "4", 0o644)]);
        assert!(write(&target, &second).unwrap());
        assert_ne!(fs::read_link(target.join(DATA_DIR)).unwrap(), data_before);
        assert_eq!(read(&target.join("a")), "3");
        assert_eq!(read(&target.join("c")), "4");
        assert!(fs::symlink_metadata(target.join("sub")).is_err());
        assert_eq!(timestamped_dirs(&target).len(), 1);

        // A mode change alone is a change.
        let third = payload(&[("a", "3", 0o400), ("c", "4", 0o644)]);
        assert!(write(&target, &third).unwrap());

        // An empty payload (an optional object that is missing) leaves an empty volume.
        assert!(write(&target, &Payload::new()).unwrap());
        assert!(fs::symlink_metadata(target.join("a")).is_err());
    }

    #[test]
    fn bad_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (path, message) in [
            ("/etc/passwd", "invalid path: must be relative path: /etc/passwd"),
            ("a/../../x", "invalid path: must not contain '..': a/../../x"),
            ("..data", "invalid path: must not start with '..': ..data"),
            ("", "invalid path: must not be empty: "),
        ] {
            let error = write(dir.path(), &payload(&[(path, "x", 0o644)])).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970_01_01_00_00_00");
        assert_eq!(timestamp(951_825_600), "2000_02_29_12_00_00");
        assert_eq!(timestamp(1_735_689_599), "2024_12_31_23_59_59");
    }
}
