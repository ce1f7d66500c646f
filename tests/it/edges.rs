//! The crate edges of DESIGN.md §2, checked with `cargo metadata`.

use serde_json::Value;
use std::collections::{HashMap, HashSet};

fn dependencies() -> HashMap<String, HashSet<String>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(tests::workspace_root())
        .output()
        .expect("cargo metadata");
    assert!(output.status.success());
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal dependencies
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn crate_edges_follow_the_design() {
    let deps = dependencies();
    let forbidden = |krate: &str, names: &[&str]| {
        let found: Vec<_> = names.iter().filter(|n| deps[krate].contains(**n)).collect();
        assert!(found.is_empty(), "{krate} must not depend on {found:?}");
    };
    forbidden(
        "engine",
        &[
            "axum",
            "hyper",
            "tower",
            "scylla",
            "redis",
            "lettre",
            "reqwest",
            "fjall",
            "serde_json",
            "storage",
            "gateway",
        ],
    );
    forbidden(
        "storage",
        &[
            "axum", "hyper", "tower", "redis", "lettre", "reqwest", "gateway",
        ],
    );
    forbidden(
        "integrations",
        &["axum", "hyper", "tower", "storage", "gateway", "fjall"],
    );
    forbidden("loadtest", &["engine", "storage", "gateway"]);
    forbidden("benches", &["gateway", "axum"]);
    forbidden("tests", &["engine", "storage"]);
    assert!(deps["storage"].contains("engine"));
    assert!(deps["gateway"].contains("engine") && deps["gateway"].contains("storage"));
}
