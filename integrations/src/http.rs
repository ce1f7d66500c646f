//! The outbound HTTP client every adapter shares the set-up of: TLS through rustls (aws-lc-rs,
//! the platform's trusted roots), a per-call timeout, and no redirects (a provider's API never
//! redirects; a redirect is an error).

use std::time::Duration;

/// A client whose calls fail after `timeout`.
///
/// # Errors
/// If the TLS set-up fails (no usable roots on the platform).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("regengine/", env!("CARGO_PKG_VERSION")))
        .build()
}
