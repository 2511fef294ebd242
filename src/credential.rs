//! The Amboss API key: read from `magma-api-key-file`, else from `AMBOSS_API_KEY`. Without one,
//! every order is bought anonymously under its own session key.

use std::path::{Path, PathBuf};

use crate::config::API_KEY_FILE;
use crate::secret::Secret;

/// Where the API key came from, for `magma-status` (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env,
    None,
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(p) => format!("API key from {}", p.display()),
            KeySource::Env => "API key from AMBOSS_API_KEY".into(),
            KeySource::None => "none: orders are bought anonymously with session keys".into(),
        }
    }
}

#[derive(Debug)]
pub struct ApiKey {
    pub key: Option<Secret>,
    pub source: KeySource,
    /// Things the operator should fix, though they do not stop the plugin.
    pub warnings: Vec<String>,
}

/// `file` relative paths are taken relative to `base` (lightningd's network directory).
pub fn load(file: Option<&Path>, base: &Path, env: Option<String>) -> Result<ApiKey, String> {
    let Some(file) = file else {
        return Ok(match env.filter(|v| !v.trim().is_empty()) {
            Some(v) => ApiKey {
                key: Some(Secret::new(v.trim())),
                source: KeySource::Env,
                warnings: Vec::new(),
            },
            None => ApiKey {
                key: None,
                source: KeySource::None,
                warnings: Vec::new(),
            },
        });
    };
    let path = base.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{API_KEY_FILE}: cannot read {}: {e}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!("{API_KEY_FILE}: {} is empty", path.display()));
    }
    if key.chars().any(char::is_whitespace) {
        return Err(format!(
            "{API_KEY_FILE}: {} must hold only the API key, on one line",
            path.display()
        ));
    }
    let mut warnings = Vec::new();
    if let Some(mode) = loose_mode(&path) {
        warnings.push(format!(
            "{API_KEY_FILE}: {} can be read by other users (mode {mode:o}); run chmod 600 on it",
            path.display()
        ));
    }
    Ok(ApiKey {
        key: Some(Secret::new(key)),
        source: KeySource::File(path),
        warnings,
    })
}

#[cfg(unix)]
fn loose_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_: &Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn file_env_and_none() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "key", "amboss_abc123\n", 0o600);
        let k = load(
            Some(Path::new("key")),
            dir.path(),
            Some("amboss_env".into()),
        )
        .unwrap();
        assert_eq!(
            k.key.unwrap().expose(),
            "amboss_abc123",
            "the file wins over the env"
        );
        assert!(k.warnings.is_empty());
        let k = load(None, dir.path(), Some(" amboss_env ".into())).unwrap();
        assert_eq!(
            (k.key.unwrap().expose(), k.source),
            ("amboss_env", KeySource::Env)
        );
        let k = load(None, dir.path(), Some("".into())).unwrap();
        assert_eq!((k.key, k.source), (None, KeySource::None));
    }

    #[test]
    fn loose_permissions_warn() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "key", "amboss_abc123", 0o644);
        let k = load(Some(&p), dir.path(), None).unwrap();
        assert_eq!(k.warnings.len(), 1);
        assert!(k.warnings[0].contains("644") && k.warnings[0].contains("chmod 600"));
        assert!(!k.warnings[0].contains("amboss_abc123"));
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "empty", "  \n", 0o600);
        write(dir.path(), "two", "amboss_a\namboss_b\n", 0o600);
        for (name, words) in [
            ("missing", "cannot read"),
            ("empty", "is empty"),
            ("two", "only the API key"),
        ] {
            let e = load(Some(Path::new(name)), dir.path(), None).unwrap_err();
            assert!(e.starts_with(API_KEY_FILE) && e.contains(words), "{e}");
            assert!(!e.contains("amboss_a"), "{e}");
        }
    }
}
