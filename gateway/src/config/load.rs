//! Where the configuration comes from, in three layers: the defaults (`config/default.toml`,
//! compiled into the binary, so the server starts with no file at all), then an optional file
//! holding only the keys a deployment changes, then `REGENGINE__SECTION__KEY=value`
//! environment variables. Every layer may only name keys the defaults have, so a typo is an
//! error that names the key and the layer, never a setting silently ignored.
//!
//! Secrets (string keys naming a password, secret, token or API key) come from the environment
//! or from files, never from the configuration file: a file that sets one is refused. Every
//! secret `key` also has a `key_file` form, in the file or the environment
//! (`REGENGINE__OUTBOX__SMTP__PASSWORD_FILE=/run/secrets/smtp`): the named file's content,
//! without its final line break, is the secret (one secret per line for a list such as
//! `payments.stripe.webhook_secrets`). That is how container secrets are mounted.

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
    /// The configuration file sets a secret.
    #[error(
        "{layer}: `{key}` is a secret: set it in the environment ({variable}) or name a file \
         holding it with `{key}_file`, never in a configuration file"
    )]
    SecretInFile {
        layer: String,
        key: String,
        variable: String,
    },
    /// A `*_file` secret could not be read.
    #[error("`{key}_file`: reading {}", path.display())]
    SecretFile {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
        let mut over = parse(&text, &layer)?;
        let files = take_secret_files(&table, &mut over, "")?;
        refuse_secrets(&over, "", &layer)?;
        merge(&mut table, over, "", &layer)?;
        for (keys, path) in files {
            set_secret_from_file(&mut table, &keys, &path)?;
        }
    }
    for (variable, value) in env {
        if let Some(rest) = variable.strip_prefix(ENV_PREFIX) {
            let keys: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            if let Some((stem, parents)) = secret_file_key(&table, &keys) {
                let keys = [parents, &[stem]].concat();
                set_secret_from_file(&mut table, &keys, Path::new(&value))?;
                continue;
            }
            set_path(&mut table, &keys, &value, &variable)?;
        }
    }
    Ok(table)
}

/// The value at `keys` in `table`, if any.
fn lookup<'a>(table: &'a toml::Table, keys: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = keys.split_last()?;
    let mut current = table;
    for key in parents {
        current = current.get(key)?.as_table()?;
    }
    current.get(last)
}

/// Whether the defaults hold a secret at `keys`: a string or list whose name names a secret.
fn is_secret(defaults: &toml::Table, keys: &[String]) -> bool {
    keys.last().is_some_and(|k| names_secret(k))
        && matches!(
            lookup(defaults, keys),
            Some(toml::Value::String(_) | toml::Value::Array(_))
        )
}

/// For `….key_file` naming a secret `key` of the defaults: (`key`, the parent path).
fn secret_file_key<'a>(
    defaults: &toml::Table,
    keys: &'a [String],
) -> Option<(String, &'a [String])> {
    let (last, parents) = keys.split_last()?;
    let stem = last.strip_suffix("_file")?;
    let path = [parents, &[stem.to_owned()]].concat();
    (lookup(defaults, keys).is_none() && is_secret(defaults, &path))
        .then(|| (stem.to_owned(), parents))
}

/// Removes the `*_file` secret keys from a file layer; returns their secret's path and file.
fn take_secret_files(
    defaults: &toml::Table,
    over: &mut toml::Table,
    prefix: &str,
) -> Result<Vec<(Vec<String>, PathBuf)>, ConfigError> {
    let path_of = |key: &str| -> Vec<String> {
        prefix
            .split('.')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .chain([key.to_owned()])
            .collect()
    };
    let mut found = Vec::new();
    let names: Vec<String> = over.keys().cloned().collect();
    for name in names {
        let keys = path_of(&name);
        if let Some(toml::Value::Table(inner)) = over.get_mut(&name) {
            found.extend(take_secret_files(
                defaults,
                inner,
                &format!("{prefix}{name}."),
            )?);
        } else if let Some((stem, parents)) = secret_file_key(defaults, &keys) {
            let Some(toml::Value::String(file)) = over.remove(&name) else {
                return Err(ConfigError::Invalid(format!(
                    "`{}` must be a file name",
                    keys.join(".")
                )));
            };
            found.push(([parents, &[stem]].concat(), PathBuf::from(file)));
        }
    }
    Ok(found)
}

/// Refuses a file layer that sets a secret (to anything but empty).
fn refuse_secrets(over: &toml::Table, prefix: &str, layer: &str) -> Result<(), ConfigError> {
    for (key, value) in over {
        let path = format!("{prefix}{key}");
        let set = match value {
            toml::Value::Table(inner) => {
                refuse_secrets(inner, &format!("{path}."), layer)?;
                false
            }
            toml::Value::String(text) => !text.is_empty(),
            toml::Value::Array(items) => !items.is_empty(),
            _ => false,
        };
        if set && names_secret(key) {
            return Err(ConfigError::SecretInFile {
                layer: layer.to_owned(),
                variable: format!("{ENV_PREFIX}{}", path.to_uppercase().replace('.', "__")),
                key: path,
            });
        }
    }
    Ok(())
}

/// Sets the secret at `keys` from `path`: its text without the final line break, or one
/// secret per non-empty line for a list.
fn set_secret_from_file(
    table: &mut toml::Table,
    keys: &[String],
    path: &Path,
) -> Result<(), ConfigError> {
    let text = read_secret(path).map_err(|source| ConfigError::SecretFile {
        key: keys.join("."),
        path: path.to_owned(),
        source,
    })?;
    let value = match lookup(table, keys) {
        Some(toml::Value::Array(_)) => toml::Value::Array(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| toml::Value::String(l.to_owned()))
                .collect(),
        ),
        _ => toml::Value::String(text),
    };
    let unknown = || ConfigError::UnknownKey {
        layer: path.display().to_string(),
        key: keys.join("."),
    };
    let (last, parents) = keys.split_last().ok_or_else(unknown)?;
    parent_mut(table, parents)
        .ok_or_else(unknown)?
        .insert(last.clone(), value);
    Ok(())
}

/// A secret file's text without its final line break (files written by editors and `echo`
/// end with one; container secrets often do).
pub fn read_secret(path: &Path) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// The table at `parents` (a path of keys) in `table`, if every step is a table.
fn parent_mut<'a>(table: &'a mut toml::Table, parents: &[String]) -> Option<&'a mut toml::Table> {
    parents
        .iter()
        .try_fold(table, |current, key| current.get_mut(key)?.as_table_mut())
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
    let current = parent_mut(table, parents).ok_or_else(unknown)?;
    let existing = current.get(last).ok_or_else(unknown)?;
    let value = match existing {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| ConfigError::BadOverride {
                variable: variable.to_owned(),
                key: keys.join("."),
                // An error message must not carry a secret (a list of them, mistyped).
                value: if names_secret(last) {
                    REDACTED.to_owned()
                } else {
                    raw.to_owned()
                },
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

    #[test]
    fn secrets_come_from_the_environment_or_files_never_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        // In the file: refused, naming the key and the variable to use instead.
        let config = write("secret.toml", "[outbox.smtp]\npassword = \"hunter2\"\n");
        let error = layered(Some(&config), []).unwrap_err().to_string();
        assert!(
            error.contains("`outbox.smtp.password` is a secret")
                && error.contains("REGENGINE__OUTBOX__SMTP__PASSWORD"),
            "{error}"
        );
        let listed = write(
            "list.toml",
            "[payments.stripe]\nwebhook_secrets = [\"whsec_1\"]\n",
        );
        assert!(layered(Some(&listed), []).is_err(), "a list of secrets too");
        // An empty one is no secret.
        let empty = write("empty.toml", "[outbox.smtp]\npassword = \"\"\n");
        assert!(layered(Some(&empty), []).is_ok());

        // `*_file` in the file: the file's text without its final line break.
        let password = write("smtp-password", "hunter2\n");
        let config = write(
            "files.toml",
            &format!(
                "[outbox.smtp]\npassword_file = {:?}\n",
                password.display().to_string()
            ),
        );
        let table = layered(Some(&config), []).unwrap();
        assert_eq!(
            table["outbox"]["smtp"]["password"].as_str(),
            Some("hunter2")
        );
        assert!(table["outbox"]["smtp"].get("password_file").is_none());
        // `*_FILE` in the environment; a list takes one secret per line.
        let secrets = write("webhook-secrets", "whsec_new\n\nwhsec_old\n");
        let env = [(
            "REGENGINE__PAYMENTS__STRIPE__WEBHOOK_SECRETS_FILE".to_owned(),
            secrets.display().to_string(),
        )];
        let table = layered(None, env).unwrap();
        let listed: Vec<&str> = table["payments"]["stripe"]["webhook_secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, ["whsec_new", "whsec_old"]);
        assert!(
            !redacted(table).to_string().contains("whsec_"),
            "still redacted"
        );
        // A missing file names the key; `_file` exists only for secrets.
        let missing = [(
            "REGENGINE__OUTBOX__SMTP__PASSWORD_FILE".to_owned(),
            "/nonexistent/secret".to_owned(),
        )];
        let error = layered(None, missing).unwrap_err().to_string();
        assert!(error.contains("outbox.smtp.password_file"), "{error}");
        // A mistyped list of secrets is refused without showing them.
        let mistyped = [(
            "REGENGINE__PAYMENTS__STRIPE__WEBHOOK_SECRETS".to_owned(),
            "whsec_leak".to_owned(),
        )];
        let error = layered(None, mistyped).unwrap_err().to_string();
        assert!(
            !error.contains("whsec_leak") && error.contains(REDACTED),
            "{error}"
        );
        let not_secret = [("REGENGINE__HTTP__BIND_FILE".to_owned(), "/x".to_owned())];
        assert!(matches!(
            layered(None, not_secret),
            Err(ConfigError::UnknownKey { .. })
        ));
    }
}
