//! Configuration as an operator meets it: the binary starts with no file, a file holds only
//! the keys it changes, the environment wins, and `--check-config` prints the effective
//! configuration with secrets redacted, refusing an invalid one with the key named.

use std::process::{Command, Output};
use tests::gateway_binary;

fn check_config(file: Option<&std::path::Path>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(gateway_binary());
    command.arg("--check-config");
    if let Some(file) = file {
        command.arg("--config").arg(file);
    }
    // A stray REGENGINE__* from the caller's shell must not change what this test sees.
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("REGENGINE__")) {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn effective(output: &Output) -> toml::Table {
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.parse().unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn a_partial_file_and_the_environment_layer_over_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(
        &file,
        "[http]\nconcurrency_max = 123\nbind = \"127.0.0.1:9999\"\n\n[auth.verify_keys]\nold = \"old.key\"\n",
    )
    .unwrap();
    let output = check_config(Some(&file), &[("REGENGINE__HTTP__BIND", "127.0.0.1:7000")]);
    assert!(output.status.success(), "{output:?}");
    let config = effective(&output);
    assert_eq!(config["http"]["concurrency_max"].as_integer(), Some(123));
    assert_eq!(
        config["http"]["bind"].as_str(),
        Some("127.0.0.1:7000"),
        "the environment wins over the file"
    );
    assert_eq!(
        config["auth"]["verify_keys"]["old"].as_str(),
        Some("old.key")
    );
    assert_eq!(
        config["storage"]["batch_events_max"].as_integer(),
        Some(4096),
        "a key the file does not set keeps its default"
    );
}

#[test]
fn check_config_redacts_secrets() {
    let output = check_config(
        None,
        &[(
            "REGENGINE__RATE_LIMIT__REDIS_URL",
            "redis://limiter:s3cr3t-pw@127.0.0.1:6379/0",
        )],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("s3cr3t-pw"), "{stdout}");
    assert_eq!(
        effective(&output)["rate_limit"]["redis_url"].as_str(),
        Some("redis://limiter:<redacted>@127.0.0.1:6379/0")
    );
}

#[test]
fn an_invalid_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    for (text, key) in [
        ("[outbox]\nattempts_max = 0\n", "outbox.attempts_max"),
        ("[http]\nconcurency_max = 10\n", "http.concurency_max"),
        ("[http]\nconcurrency_max = \"lots\"\n", "concurrency_max"),
    ] {
        std::fs::write(&file, text).unwrap();
        let output = check_config(Some(&file), &[]);
        assert!(!output.status.success(), "{text}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{text}: {stderr}");
    }
}
