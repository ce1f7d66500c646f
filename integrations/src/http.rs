//! The outbound HTTP client every adapter shares the set-up of: TLS through rustls with the
//! ring provider (installed once per process), the platform's trusted roots, a per-call
//! timeout, and no redirects (a provider's API never redirects; a redirect is an error).

use std::sync::Once;
use std::time::Duration;

static PROVIDER: Once = Once::new();

/// A client whose calls fail after `timeout`.
///
/// # Errors
/// If the TLS set-up fails (no usable roots on the platform).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    PROVIDER.call_once(|| {
        // ring rather than aws-lc-rs: no C build script (aws-lc-sys adds ~2 minutes to a
        // release build here). rustls 0.23.48 deprecates ring's provider because it lacks the
        // post-quantum hybrid key exchange; provider calls then use X25519 alone. Switch to
        // reqwest's `rustls` feature (aws-lc-rs) when that matters more than the build.
        // Another part of the process may have installed a provider first; either is fine.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("regengine/", env!("CARGO_PKG_VERSION")))
        .build()
}
