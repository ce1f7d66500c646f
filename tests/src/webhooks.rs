//! An organizer's webhook receiver (`tests/support/webhook_receiver.py`) that verifies every
//! delivery with the Standard Webhooks reference library, not with the code under test.

use crate::python_server;
use serde_json::{Value, json};
use std::process::Child;

/// A running receiver.
pub struct Receiver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
}

impl Receiver {
    pub fn start() -> Receiver {
        let (child, base) = python_server("webhook_receiver.py", &[]);
        Receiver {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// The secrets deliveries are verified with.
    pub async fn secrets(&self, secrets: &[&str]) {
        let url = format!("{}/_test/secrets", self.base);
        crate::fake_json(self.http.post(url).json(&json!({"secrets": secrets}))).await;
    }

    /// The statuses it answers to the next deliveries (200 after them).
    pub async fn script(&self, statuses: &[u16]) {
        let url = format!("{}/_test/script", self.base);
        crate::fake_json(self.http.post(url).json(&json!({"statuses": statuses}))).await;
    }

    /// Every delivery it received, in arrival order: `path`, `id`, `timestamp`, `signature`,
    /// `content_type`, `verified_with` (the secrets that verified it), `payload`, `answered`.
    pub async fn received(&self) -> Vec<Value> {
        let url = format!("{}/_test/received", self.base);
        let body = crate::fake_json(self.http.get(url)).await;
        body["received"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
