//! hostPath volumes' `type` checks, as upstream's `checkType`: `DirectoryOrCreate` and
//! `FileOrCreate` create what is missing, the other types only check what is there.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// A hostPath whose type check failed.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    #[error("hostPath type check failed: {path} is not a {expected}")]
    WrongType { path: String, expected: &'static str },
    #[error("{0} is an invalid volume type")]
    InvalidType(String),
    #[error("creating {path}: {error}")]
    Create { path: String, error: io::Error },
}

/// Checks (or creates) `path` according to the volume's `type` (`None` or empty: no check).
pub fn check_type(path: &Path, host_path_type: Option<&str>) -> Result<(), HostPathError> {
    let shown = path.display().to_string();
    let wrong = |expected| Err(HostPathError::WrongType { path: shown.clone(), expected });
    let create_error = |error| HostPathError::Create { path: shown.clone(), error };
    // Symlinks are followed, as upstream's os.Stat does.
    let metadata = fs::metadata(path).ok();
    let file_type = metadata.as_ref().map(fs::Metadata::file_type);
    match host_path_type.unwrap_or_default() {
        "" => Ok(()),
        "DirectoryOrCreate" if metadata.is_none() => {
            fs::create_dir_all(path).map_err(create_error)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(create_error)
        }
        "DirectoryOrCreate" | "Directory" => {
            if file_type.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                wrong("directory")
            }
        }
        "FileOrCreate" if metadata.is_none() => {
            fs::OpenOptions::new().create(true).append(true).open(path).map_err(create_error)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(create_error)
        }
        "FileOrCreate" | "File" => {
            if file_type.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                wrong("file")
            }
        }
        "Socket" => {
            if file_type.is_some_and(|t| t.is_socket()) {
                Ok(())
            } else {
                wrong("socket file")
            }
        }
        "CharDevice" => {
            if file_type.is_some_and(|t| t.is_char_device()) {
                Ok(())
            } else {
                wrong("character device")
            }
        }
        "BlockDevice" => {
            if file_type.is_some_and(|t| t.is_block_device()) {
                Ok(())
            } else {
                wrong("block device")
            }
        }
        other => Err(HostPathError::InvalidType(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_and_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        let missing = dir.path().join("a/b");
        let message = |path: &Path, kind: Option<&str>| {
            check_type(path, kind).err().map(|e| e.to_string()).unwrap_or_default()
        };

        assert_eq!(message(dir.path(), Some("Directory")), "");
        assert_eq!(message(&file, None), "");
        assert_eq!(
            message(&file, Some("Directory")),
            format!("hostPath type check failed: {} is not a directory", file.display())
        );
        assert_eq!(
            message(&file, Some("DirectoryOrCreate")),
            format!("hostPath type check failed: {} is not a directory", file.display())
        );
        assert_eq!(
            message(dir.path(), Some("File")),
            format!("hostPath type check failed: {} is not a file", dir.path().display())
        );
        assert_eq!(
            message(&file, Some("Socket")),
            format!("hostPath type check failed: {} is not a socket file", file.display())
        );
        assert_eq!(
            message(&file, Some("CharDevice")),
            format!("hostPath type check failed: {} is not a character device", file.display())
        );
        assert_eq!(message(Path::new("/dev/null"), Some("CharDevice")), "");
        assert_eq!(
            message(&file, Some("BlockDevice")),
            format!("hostPath type check failed: {} is not a block device", file.display())
        );
        assert_eq!(message(&file, Some("Weird")), "Weird is an invalid volume type");

        assert!(message(&missing, Some("Directory")).contains("is not a directory"));
        assert_eq!(message(&missing, Some("DirectoryOrCreate")), "");
        assert!(missing.is_dir());
        let new_file = missing.join("f");
        assert_eq!(message(&new_file, Some("FileOrCreate")), "");
        assert!(new_file.is_file());
        assert_eq!(message(&new_file, Some("File")), "");
    }
}
