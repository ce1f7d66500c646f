//! Stamps the build with its commit (`REGENGINE_COMMIT` at run time of the build: the
//! environment's, else `git rev-parse`, else `unknown`) for `--version` and the
//! `build_info` metric. A container build without `.git` passes it as a build argument.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=REGENGINE_COMMIT");
    // Built again when HEAD moves (a checkout, or a commit on the current branch). Only paths
    // that exist: cargo runs a build script again on every build while one is missing.
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("REGENGINE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // Only a commit id's characters: it becomes a metric label and a version string.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(40)
        .collect();
    println!("cargo:rustc-env=REGENGINE_COMMIT={commit}");
}
