//! Bank transfer: the structured creditor reference a buyer puts on the transfer
//! (`reference.rs`), statements as organizers upload them (`statement.rs`), and the provider
//! adapter: a bank transfer is "created" by giving it its reference; nothing is called.

pub mod camt;
pub mod reference;
pub mod statement;

use engine::outbox::BoxFuture;
use engine::payment::{CreatePayment, CreatedPayment, PaymentProvider, ProviderError, RefundCall};

/// Bank transfers: the reference of a registration is `RF` + check digits + 20 base-36
/// characters derived from its id (103 of its bits), the same on every attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct BankTransfer;

/// The creditor reference of a registration.
pub fn registration_reference(id: engine::ids::RegistrationId) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = id.0.as_u128();
    let mut base = [b'0'; 20];
    for slot in base.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    let base = String::from_utf8_lossy(&base).into_owned();
    reference::creditor_reference(&base).expect("20 base-36 characters are a valid base")
}

impl PaymentProvider for BankTransfer {
    fn create<'a>(
        &'a self,
        req: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<CreatedPayment, ProviderError>> {
        Box::pin(async move {
            Ok(CreatedPayment {
                provider_ref: registration_reference(req.registration_id),
                client_secret: None,
                approve_url: None,
            })
        })
    }

    fn cancel<'a>(&'a self, _provider_ref: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    fn refund<'a>(&'a self, _req: &'a RefundCall) -> BoxFuture<'a, Result<String, ProviderError>> {
        // Money that came by bank transfer goes back by a transfer someone makes: the refund
        // is listed (failed) for a manager to pay by hand.
        Box::pin(async {
            Err(ProviderError::Rejected(
                "a bank transfer is refunded by a transfer made by hand".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_has_one_valid_reference() {
        let id = engine::ids::RegistrationId::new();
        let r = registration_reference(id);
        assert_eq!(r.len(), 24);
        assert_eq!(reference::parse(&r).as_deref(), Ok(r.as_str()));
        assert_eq!(registration_reference(id), r);
        assert_ne!(
            registration_reference(engine::ids::RegistrationId::new()),
            r
        );
    }
}
