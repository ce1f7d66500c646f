//! A local Twilio (`tests/support/fake_twilio.py`) following Twilio's documented formats: the
//! Messages API and the signed status callbacks, signed by Python's `hmac`.

use crate::python_server;
use std::process::Child;

/// The account the tests give the gateway and the fake Twilio.
pub const TWILIO_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_AUTH_TOKEN: &str = "twilio-test-auth-token";

/// A running fake Twilio.
pub struct FakeTwilio {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
}

impl FakeTwilio {
    pub fn start() -> FakeTwilio {
        let (child, base) =
            python_server("fake_twilio.py", &[TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN]);
        FakeTwilio {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// The messages it accepted, in order.
    pub async fn messages(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/_test/messages", self.base);
        let body = crate::fake_json(self.http.get(url)).await;
        body["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Has it send message `sid`'s status callback (`status`, with `error_code`), through
    /// `via` (where the public callback URL's host forwards to); `tamper` changes the status
    /// after signing. The receiver's status and body.
    pub async fn status(
        &self,
        sid: &str,
        status: &str,
        error_code: Option<u32>,
        tamper: bool,
        via: &str,
    ) -> (u16, String) {
        let order = serde_json::json!({
            "sid": sid, "status": status, "error_code": error_code, "tamper": tamper, "via": via,
        });
        let url = format!("{}/_test/status", self.base);
        crate::fake_relayed(self.http.post(url).json(&order)).await
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
