//! Where the configuration comes from, in three layers: the defaults (`config/default.toml`,
//! compiled into the binary, so the server starts with no file at all), then an optional file
//! holding only the keys a deployment changes, then `REGENGINE__SECTION__KEY=value`
//! environment variables. Every layer may only name keys the defaults have, so a typo is an
//! error that names the key and the layer, never a setting silently ignored.

use std::path::{Path, PathBuf};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "REGENGINE__";

/// The one set of defaults: every key, documented with its reason.
pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// What the redaction leaves in place of a secret in `--check-config`'s output.
const REDACTED: &str = "<redacted>";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A layer is not TOML, or a value does not fit its key's type.
    #[error("{layer}: {source}")]
    Syntax {
        /// The defaults, the file's path, or `configuration` for the merged result.
        layer: String,
        source: Box<toml::de::Error>,
    },
    /// A layer names a key the defaults do not have.
    #[error("{layer}: unknown key `{key}`")]
    UnknownKey { layer: String, key: String },
    /// An environment variable's value does not fit its key.
    #[error("{variable}: `{value}` is not a valid value for `{key}`")]
    BadOverride {
        variable: String,
        key: String,
        value: String,
    },
    /// A value is out of its range, or values contradict each other; the message names the
    /// key or keys.
    #[error("{0}")]
    Invalid(String),
}

/// The effective configuration as a TOML table: defaults, then `file`, then `env`.
pub fn layered(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, ConfigError> {
    let mut table = parse(DEFAULTS, "defaults")?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let layer = path.display().to_string();
        merge(&mut table, parse(&text, &layer)?, "", &layer)?;
    }
    for (variable, value) in env {
        if let Some(rest) = variable.strip_prefix(ENV_PREFIX) {
            let keys: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            set_path(&mut table, &keys, &value, &variable)?;
        }
    }
    Ok(table)
}

fn parse(text: &str, layer: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Syntax {
        layer: layer.to_owned(),
        source: Box::new(source),
    })
}

/// Lays `over` onto `base`, key by key. A table that is empty in the defaults is a free-form
/// map (`auth.verify_keys`): the layer's entries replace it whole.
fn merge(
    base: &mut toml::Table,
    over: toml::Table,
    prefix: &str,
    layer: &str,
) -> Result<(), ConfigError> {
    for (key, value) in over {
        let path = format!("{prefix}{key}");
        let Some(existing) = base.get_mut(&key) else {
            return Err(ConfigError::UnknownKey {
                layer: layer.to_owned(),
                key: path,
            });
        };
        match (existing, value) {
            (toml::Value::Table(inner), toml::Value::Table(value)) if !inner.is_empty() => {
                merge(inner, value, &format!("{path}."), layer)?;
            }
            (existing, value) => *existing = value,
        }
    }
    Ok(())
}

/// Sets `keys` (a path of lower-case names) in `table` to `raw`, parsed as a TOML value when
/// the key holds a number, boolean or array, and taken as a string when it holds one.
fn set_path(
    table: &mut toml::Table,
    keys: &[String],
    raw: &str,
    variable: &str,
) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownKey {
        layer: variable.to_owned(),
        key: keys.join("."),
    };
    let (last, parents) = keys.split_last().ok_or_else(unknown)?;
    let mut current = table;
    for key in parents {
        current = current
            .get_mut(key)
            .and_then(|v| v.as_table_mut())
            .ok_or_else(unknown)?;
    }
    let existing = current.get(last).ok_or_else(unknown)?;
    let value = match existing {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| ConfigError::BadOverride {
                variable: variable.to_owned(),
                key: keys.join("."),
                value: raw.to_owned(),
            })?,
    };
    current.insert(last.clone(), value);
    Ok(())
}

/// `table` with its secrets replaced: values of keys that name a secret (`password`,
/// `secret`, `token`, `api_key`), and the password inside any URL (`redis://:pw@host`).
pub fn redacted(mut table: toml::Table) -> toml::Table {
    redact(&mut table);
    table
}

fn redact(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(inner) => redact(inner),
            toml::Value::String(text) if names_secret(key) && !text.is_empty() => {
                *text = REDACTED.to_owned();
            }
            // A list of secrets (webhook signing secrets during a rotation).
            toml::Value::Array(items) if names_secret(key) => {
                for item in items {
                    if let toml::Value::String(text) = item
                        && !text.is_empty()
                    {
                        *text = REDACTED.to_owned();
                    }
                }
            }
            toml::Value::String(text) => {
                if let Some(clean) = url_without_password(text) {
                    *text = clean;
                }
            }
            _ => {}
        }
    }
}

fn names_secret(key: &str) -> bool {
    ["password", "secret", "token", "api_key"]
        .iter()
        .any(|word| key.contains(word))
}

/// `scheme://user:<redacted>@host...` for a URL carrying a password; `None` otherwise.
fn url_without_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, host) = rest[..authority_end].rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| {
        format!(
            "{scheme}://{user}:{REDACTED}@{host}{}",
            &rest[authority_end..]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_changes_only_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "[http]\nbind = \"0.0.0.0:9000\"\n").unwrap();
        let table = layered(Some(&path), []).unwrap();
        assert_eq!(table["http"]["bind"].as_str(), Some("0.0.0.0:9000"));
        let defaults = parse(DEFAULTS, "defaults").unwrap();
        assert_eq!(
            table["http"]["concurrency_max"],
            defaults["http"]["concurrency_max"]
        );
        assert_eq!(table["storage"], defaults["storage"]);
    }

    #[test]
    fn a_typo_in_a_file_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "[http]\nconcurency_max = 10\n").unwrap();
        let error = layered(Some(&path), []).unwrap_err().to_string();
        assert!(error.contains("mine.toml"), "{error}");
        assert!(error.contains("`http.concurency_max`"), "{error}");
    }

    #[test]
    fn free_form_maps_take_the_layers_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "[auth.verify_keys]\nold = \"old.key\"\n").unwrap();
        let table = layered(Some(&path), []).unwrap();
        assert_eq!(
            table["auth"]["verify_keys"]["old"].as_str(),
            Some("old.key")
        );
    }

    #[test]
    fn an_override_names_the_variable() {
        let env = [("REGENGINE__HTTP__NOPE".to_owned(), "1".to_owned())];
        let error = layered(None, env).unwrap_err().to_string();
        assert!(error.contains("REGENGINE__HTTP__NOPE"), "{error}");
        assert!(error.contains("`http.nope`"), "{error}");
        let env = [(
            "REGENGINE__HTTP__CONCURRENCY_MAX".to_owned(),
            "many".to_owned(),
        )];
        let error = layered(None, env).unwrap_err().to_string();
        assert!(error.contains("`many`"), "{error}");
    }

    #[test]
    fn secrets_are_redacted() {
        let mut table = toml::Table::new();
        table.insert("smtp_password".into(), "hunter2".into());
        table.insert("api_key".into(), "sk_live_1".into());
        table.insert("empty_secret".into(), "".into());
        table.insert(
            "webhook_secrets".into(),
            toml::Value::Array(vec!["whsec_old".into(), "whsec_new".into()]),
        );
        table.insert("redis_url".into(), "redis://app:pw@10.0.0.1:6379/0".into());
        table.insert("plain_url".into(), "redis://10.0.0.1:6379".into());
        let text = toml::to_string(&redacted(table)).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("sk_live_1"),
            "{text}"
        );
        assert!(!text.contains(":pw@"), "{text}");
        assert!(
            text.contains("redis://app:<redacted>@10.0.0.1:6379/0"),
            "{text}"
        );
        assert!(text.contains("redis://10.0.0.1:6379"), "{text}");
        assert!(text.contains("empty_secret = \"\""), "{text}");
        assert!(!text.contains("whsec_"), "{text}");
    }
}
