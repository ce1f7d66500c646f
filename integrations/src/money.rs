//! Amounts as providers want them. The engine keeps money as integer minor units with an ISO 4217
//! currency; Stripe takes those integers as they are, PayPal and bank statements use decimal
//! strings (`"85.00"`), and the number of decimals depends on the currency (JPY none, EUR two,
//! KWD three): it is never assumed to be two.

/// Why an amount cannot be written or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not three upper-case letters.
    #[error("not an ISO 4217 currency code: {0:?}")]
    Currency(String),
    /// Not a plain decimal with at most the currency's decimals, or out of range.
    #[error("not an amount in {currency}: {text:?}")]
    Amount { currency: String, text: String },
}

/// Decimals of `currency`'s minor unit (ISO 4217): 0, 2 (most), 3 or 4.
pub fn exponent(currency: &str) -> Result<u32, MoneyError> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(MoneyError::Currency(currency.to_owned()));
    }
    Ok(match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    })
}

/// `minor` units of `currency` as a decimal string: `8500` EUR → `"85.00"`, `8500` JPY →
/// `"8500"`, `-1` KWD → `"-0.001"`.
pub fn to_decimal(minor: i64, currency: &str) -> Result<String, MoneyError> {
    let exponent = exponent(currency)?;
    let sign = if minor < 0 { "-" } else { "" };
    let magnitude = minor.unsigned_abs();
    if exponent == 0 {
        return Ok(format!("{sign}{magnitude}"));
    }
    let scale = 10u64.pow(exponent);
    let width = exponent as usize;
    Ok(format!(
        "{sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale
    ))
}

/// A decimal string of `currency` (`"85.00"`, `"85.5"`, `"85"`) as minor units; more decimals
/// than the currency has, signs other than a leading `-`, exponents and separators are refused.
pub fn from_decimal(text: &str, currency: &str) -> Result<i64, MoneyError> {
    let exponent = exponent(currency)?;
    let refused = || MoneyError::Amount {
        currency: currency.to_owned(),
        text: text.to_owned(),
    };
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !plain(whole)
        || !plain(fraction)
        || fraction.len() > exponent as usize
        || (digits.contains('.') && fraction.is_empty())
    {
        return Err(refused());
    }
    let padded = format!("{whole}{fraction:0<width$}", width = exponent as usize);
    let magnitude: i64 = padded.parse().map_err(|_| refused())?;
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_currency() {
        assert_eq!(to_decimal(8500, "EUR").unwrap(), "85.00");
        assert_eq!(to_decimal(5, "USD").unwrap(), "0.05");
        assert_eq!(to_decimal(8500, "JPY").unwrap(), "8500");
        assert_eq!(to_decimal(1234, "KWD").unwrap(), "1.234");
        assert_eq!(to_decimal(-1, "KWD").unwrap(), "-0.001");
        assert_eq!(to_decimal(0, "EUR").unwrap(), "0.00");
        assert_eq!(
            to_decimal(i64::MIN, "EUR").unwrap(),
            "-92233720368547758.08"
        );
        assert!(to_decimal(1, "eur").is_err() && to_decimal(1, "EURO").is_err());
    }

    #[test]
    fn reading_is_exact_and_strict() {
        assert_eq!(from_decimal("85.00", "EUR"), Ok(8500));
        assert_eq!(from_decimal("85.5", "EUR"), Ok(8550));
        assert_eq!(from_decimal("85", "EUR"), Ok(8500));
        assert_eq!(from_decimal("-0.001", "KWD"), Ok(-1));
        assert_eq!(from_decimal("8500", "JPY"), Ok(8500));
        for (text, currency) in [
            ("85.001", "EUR"),
            ("85.0", "JPY"),
            ("85.", "EUR"),
            (".5", "EUR"),
            ("+85", "EUR"),
            ("8,50", "EUR"),
            ("1e3", "EUR"),
            (" 85", "EUR"),
            ("--1", "EUR"),
            ("99999999999999999999", "EUR"),
        ] {
            assert!(from_decimal(text, currency).is_err(), "{text} {currency}");
        }
        for minor in [0, 1, 99, 8500, -8500, 123_456_789] {
            for currency in ["EUR", "JPY", "KWD", "CLF"] {
                let text = to_decimal(minor, currency).unwrap();
                assert_eq!(from_decimal(&text, currency), Ok(minor), "{text}");
            }
        }
    }
}
