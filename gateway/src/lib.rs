//! The gateway: the registration engine's server. It is the composition root (storage,
//! journal writer, engine, HTTP/WebSocket API) and the only crate that knows HTTP.

pub mod auth;
pub mod client_ip;
pub mod config;
pub mod conn;
pub mod hooks;
pub mod http;
pub mod inbox;
pub mod key_file;
pub mod log_throttle;
pub mod notify;
pub mod offline_pack;
pub mod ratelimit;
pub mod server;
pub mod sms;
pub mod telemetry;
pub mod ticket_code;
pub mod unsubscribe;
