//! One-click unsubscribe (RFC 8058): a non-transactional mail to an account carries
//! `List-Unsubscribe: <{url}?token=…>` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`;
//! the mail client POSTs to that URL and the account's e-mail for that category is turned
//! off. The token names the account and the category and is signed (HMAC-SHA256 with a key
//! kept in the data directory), so it needs no session and cannot be made for another
//! account; it does not expire (an unsubscribe link must keep working).

use data_encoding::BASE64URL_NOPAD;
use engine::accounts::Category;
use engine::ids::UserId;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::path::Path;

/// Bytes of the signature kept in a token.
const MAC_BYTES: usize = 16;

/// Makes and checks unsubscribe tokens.
#[derive(Clone)]
pub struct Unsubscribe {
    key: [u8; 32],
    /// The public URL of `POST /api/v1/unsubscribe` (empty: no header is sent).
    url: String,
}

impl Unsubscribe {
    /// With the key in `path` (created if missing) and the public `url`.
    ///
    /// # Errors
    /// If the key file cannot be read or created.
    pub fn load_or_create(path: &Path, url: &str) -> std::io::Result<Self> {
        Ok(Self {
            key: crate::key_file::load_or_create(path)?,
            url: url.to_owned(),
        })
    }

    /// The MAC of `payload`, before finalizing (signing truncates it, checking compares it).
    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"unsubscribe:");
        mac.update(payload);
        mac
    }

    /// The token of `user` and `category`.
    pub fn token(&self, user: UserId, category: Category) -> String {
        let mut bytes = Vec::with_capacity(17 + MAC_BYTES);
        bytes.extend_from_slice(user.as_bytes());
        bytes.push(category.code());
        let mac = self.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&mac[..MAC_BYTES]);
        BASE64URL_NOPAD.encode(&bytes)
    }

    /// The account and category of a genuine token.
    pub fn verify(&self, token: &str) -> Option<(UserId, Category)> {
        let bytes = BASE64URL_NOPAD.decode(token.as_bytes()).ok()?;
        if bytes.len() != 17 + MAC_BYTES {
            return None;
        }
        let (payload, mac) = bytes.split_at(17);
        self.mac(payload).verify_truncated_left(mac).ok()?;
        let user = UserId(uuid::Uuid::from_slice(&payload[..16]).ok()?);
        Some((user, Category::from_code(payload[16])?))
    }

    /// The `List-Unsubscribe` URL for `user`'s mail of `category`, if a URL is configured.
    pub fn url_for(&self, user: UserId, category: Category) -> Option<String> {
        (!self.url.is_empty()).then(|| format!("{}?token={}", self.url, self.token(user, category)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_account_and_category_and_cannot_be_forged() {
        let dir = tempfile::tempdir().unwrap();
        let u =
            Unsubscribe::load_or_create(&dir.path().join("k"), "https://api.example/u").unwrap();
        let user = UserId::new();
        let token = u.token(user, Category::Reminders);
        assert_eq!(u.verify(&token), Some((user, Category::Reminders)));
        // Another account, another category, or a changed byte: refused.
        let mut bytes = BASE64URL_NOPAD.decode(token.as_bytes()).unwrap();
        bytes[16] = Category::Marketing.code();
        assert_eq!(u.verify(&BASE64URL_NOPAD.encode(&bytes)), None);
        bytes[16] = Category::Reminders.code();
        bytes[0] ^= 1;
        assert_eq!(u.verify(&BASE64URL_NOPAD.encode(&bytes)), None);
        assert_eq!(u.verify("not a token"), None);
        // The same key file gives the same tokens after a restart.
        let again = Unsubscribe::load_or_create(&dir.path().join("k"), "").unwrap();
        assert_eq!(again.verify(&token), Some((user, Category::Reminders)));
        assert_eq!(
            again.url_for(user, Category::Reminders),
            None,
            "no URL: no header"
        );
    }
}
