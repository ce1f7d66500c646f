//! ISO 11649 structured creditor references (`RF` + 2 check digits + 1 to 21 letters or digits),
//! the reference a buyer copies onto a bank transfer so the statement line finds its
//! registration. The check digits are IBAN's (ISO 7064 mod 97-10): a mistyped character or two
//! swapped neighbours are caught before any matching is tried.

/// Characters after `RF` and the check digits, at most.
pub const BASE_LEN_MAX: usize = 21;

/// Why a text is not a creditor reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Not `RF`, two digits, then 1 to 21 letters or digits (spaces aside).
    #[error("not an RF creditor reference")]
    Malformed,
    /// Well formed, but the check digits do not match: a typo.
    #[error("creditor reference check digits do not match")]
    CheckDigits,
}

/// The reference for `base` (1 to 21 letters or digits, any case): `RF`, check digits, base
/// in upper case.
pub fn creditor_reference(base: &str) -> Result<String, ReferenceError> {
    let base = base.to_ascii_uppercase();
    if base.is_empty()
        || base.len() > BASE_LEN_MAX
        || !base.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ReferenceError::Malformed);
    }
    let check = 98 - mod97(&format!("{base}RF00"));
    Ok(format!("RF{check:02}{base}"))
}

/// The reference in `text` as printed or typed (spaces allowed, any case), normalised to
/// upper case without spaces, if its check digits hold.
pub fn parse(text: &str) -> Result<String, ReferenceError> {
    let reference: String = text
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    // ASCII first: the slices below are by byte.
    let well_formed = reference.is_ascii()
        && reference.len() >= 5
        && reference.len() <= 4 + BASE_LEN_MAX
        && reference.starts_with("RF")
        && reference[2..4].bytes().all(|b| b.is_ascii_digit())
        && reference[4..].bytes().all(|b| b.is_ascii_alphanumeric());
    if !well_formed {
        return Err(ReferenceError::Malformed);
    }
    let rotated = format!("{}{}", &reference[4..], &reference[..4]);
    if mod97(&rotated) == 1 {
        Ok(reference)
    } else {
        Err(ReferenceError::CheckDigits)
    }
}

/// The number `text` spells (digits as themselves, letters A=10 … Z=35) modulo 97, digit by
/// digit so that no big integer is needed. `text` is ASCII letters and digits only.
fn mod97(text: &str) -> u32 {
    text.bytes().fold(0, |rest, b| {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            _ => u32::from(b.to_ascii_uppercase() - b'A') + 10,
        };
        if value < 10 {
            (rest * 10 + value) % 97
        } else {
            (rest * 100 + value) % 97
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_examples_hold_and_round_trip() {
        // ISO 11649's own example, printed in groups of four, and a short one.
        assert_eq!(
            parse("RF18 5390 0754 7034"),
            Ok("RF18539007547034".to_owned())
        );
        assert_eq!(parse("rf712348231"), Ok("RF712348231".to_owned()));
        assert_eq!(
            creditor_reference("539007547034"),
            Ok("RF18539007547034".to_owned())
        );
        assert_eq!(creditor_reference("2348231"), Ok("RF712348231".to_owned()));
        for base in ["A", "0", "Z9", "REG01H8X4K2M7QZT9V3W6", "abc123"] {
            let reference = creditor_reference(base).unwrap();
            assert_eq!(parse(&reference), Ok(reference.clone()), "{base}");
        }
    }

    #[test]
    fn typos_and_swaps_are_caught() {
        let good = "RF18539007547034";
        for i in 4..good.len() {
            let mut typo = good.as_bytes().to_vec();
            typo[i] = if typo[i] == b'9' { b'0' } else { typo[i] + 1 };
            let typo = String::from_utf8(typo).unwrap();
            assert_eq!(parse(&typo), Err(ReferenceError::CheckDigits), "{typo}");
        }
        for i in 2..good.len() - 1 {
            let mut swapped = good.as_bytes().to_vec();
            if swapped[i] == swapped[i + 1] {
                continue;
            }
            swapped.swap(i, i + 1);
            let swapped = String::from_utf8(swapped).unwrap();
            assert_eq!(
                parse(&swapped),
                Err(ReferenceError::CheckDigits),
                "{swapped}"
            );
        }
    }

    #[test]
    fn malformed_references_and_bases_are_refused() {
        for text in [
            "",
            "RF1",
            "RF18",
            "XX18539007547034",
            "RF1A539007547034",
            "RF18-539",
            "RF18é",
        ] {
            assert_eq!(parse(text), Err(ReferenceError::Malformed), "{text}");
        }
        assert_eq!(
            parse(&format!("RF00{}", "1".repeat(22))),
            Err(ReferenceError::Malformed)
        );
        for base in ["", "with space", "ü", &"1".repeat(22)] {
            assert_eq!(
                creditor_reference(base),
                Err(ReferenceError::Malformed),
                "{base}"
            );
        }
    }
}
