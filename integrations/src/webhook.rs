//! What a provider's verified webhook delivery says, as every provider's reader returns it.

use engine::payment::ProviderReport;

/// A verified event, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A report on a payment.
    Report {
        /// Our registration id, when the provider echoes it (Stripe's metadata, PayPal's
        /// `custom_id`); otherwise the report's `provider_ref` is looked up.
        registration_id: Option<String>,
        report: ProviderReport,
    },
    /// An event type this server does not act on (answered 200 so the provider stops sending
    /// it).
    Unhandled {
        /// The event's id.
        event_id: String,
        /// Its type.
        kind: String,
    },
}

/// Why a verified body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed provider event: {0}")]
pub struct Malformed(pub String);
