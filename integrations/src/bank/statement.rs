//! Bank statements as organizers upload them: CSV (RFC 4180: commas, optional double quotes,
//! `""` inside quotes) with a header row naming the columns, in any order, any case:
//!
//! | column | required | what |
//! |---|---|---|
//! | `amount` | yes | the credit, a decimal with a point (`85.00`); debits (negative) are skipped |
//! | `currency` | yes | ISO 4217 code |
//! | `reference` | yes | the remittance information; an `RF` creditor reference is looked for in it |
//! | `id` | no | the bank's id of the line (default: a digest of the line: the same line uploaded twice is one line) |
//! | `date` | no | the booking date, kept as text |
//! | `name` | no | the payer, kept as text |

use sha2::{Digest, Sha256};

/// Lines one statement may have.
pub const LINES_MAX: usize = 10_000;

/// One credit on the statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The bank's id of the line, or a digest of it.
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The remittance information as written.
    pub reference_text: String,
    /// The `RF` reference found in it, normalised, if any.
    pub reference: Option<String>,
    pub date: String,
    pub name: String,
}

/// Why a statement cannot be read (nothing of it is applied).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("the header row lacks the column `{0}`")]
    MissingColumn(&'static str),
    #[error("line {line}: {why}")]
    BadLine { line: usize, why: String },
    #[error("more than {LINES_MAX} lines")]
    TooManyLines,
    #[error("the statement is empty or not UTF-8 text")]
    Empty,
}

/// Reads a statement. Debits and zero amounts are skipped; any unreadable credit refuses the
/// whole statement, naming its line.
///
/// # Errors
/// See [`StatementError`].
pub fn parse(text: &str) -> Result<Vec<Line>, StatementError> {
    let mut rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = rows.next().ok_or(StatementError::Empty)?;
    let names: Vec<String> = fields(header)
        .map_err(|why| StatementError::BadLine { line: 1, why })?
        .into_iter()
        .map(|n| n.trim().to_lowercase())
        .collect();
    let column = |name: &'static str| names.iter().position(|n| n == name);
    let amount = column("amount").ok_or(StatementError::MissingColumn("amount"))?;
    let currency = column("currency").ok_or(StatementError::MissingColumn("currency"))?;
    let reference = column("reference").ok_or(StatementError::MissingColumn("reference"))?;
    let (id, date, name) = (column("id"), column("date"), column("name"));
    let mut lines = Vec::new();
    for (index, raw) in rows {
        let number = index + 1;
        if lines.len() >= LINES_MAX {
            return Err(StatementError::TooManyLines);
        }
        let bad = |why: String| StatementError::BadLine { line: number, why };
        let cells = fields(raw).map_err(bad)?;
        let cell = |i: usize| cells.get(i).map(|c| c.trim()).unwrap_or_default();
        let code = cell(currency).to_uppercase();
        let text = cell(amount);
        let (negative, magnitude) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let minor = crate::money::from_decimal(magnitude, &code)
            .map_err(|e| bad(format!("amount {text:?}: {e}")))?;
        if negative || minor == 0 {
            continue;
        }
        let reference_text = cell(reference).to_owned();
        let line_id = match id.map(cell).filter(|i| !i.is_empty()) {
            Some(i) => i.chars().take(64).collect(),
            None => data_encoding::HEXLOWER.encode(&Sha256::digest(raw.trim().as_bytes())[..12]),
        };
        lines.push(Line {
            id: line_id,
            amount_minor: minor,
            currency: code,
            reference: find_reference(&reference_text),
            reference_text,
            date: date
                .map(cell)
                .unwrap_or_default()
                .chars()
                .take(32)
                .collect(),
            name: name
                .map(cell)
                .unwrap_or_default()
                .chars()
                .take(140)
                .collect(),
        });
    }
    Ok(lines)
}

/// The first valid `RF` reference in a remittance text: a word starting with `RF`, possibly
/// printed in groups of four (`RF18 5390 0754 7034`).
pub fn find_reference(text: &str) -> Option<String> {
    let upper = text.to_uppercase();
    let mut start = 0;
    while let Some(at) = upper[start..].find("RF") {
        let from = start + at;
        // Take letters, digits and single spaces after it, longest first.
        let tail: String = upper[from..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ' ')
            .take(34)
            .collect();
        let mut candidate = tail.trim_end().to_owned();
        while candidate.len() >= 5 {
            if let Ok(reference) = super::reference::parse(&candidate) {
                return Some(reference);
            }
            candidate.pop();
            candidate = candidate.trim_end().to_owned();
        }
        start = from + 2;
    }
    None
}

/// The cells of one CSV row.
fn fields(row: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = row.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            (',', false) => cells.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    if quoted {
        return Err("an unterminated quote".into());
    }
    cells.push(cell);
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_in_any_order_and_finds_references() {
        let text = "Date,Name,Reference,Amount,Currency,ID\n\
            2026-12-01,Ada Lovelace,\"Tickets RF18 5390 0754 7034, thanks\",85.00,eur,L1\n\
            2026-12-01,Bank fee,fee,-2.50,EUR,L2\n\
            2026-12-02,\"Hopper, Grace\",no reference,10,EUR,\n";
        let lines = parse(text).unwrap();
        assert_eq!(lines.len(), 2, "the debit is skipped");
        assert_eq!(lines[0].id, "L1");
        assert_eq!(lines[0].amount_minor, 8500);
        assert_eq!(lines[0].currency, "EUR");
        assert_eq!(lines[0].reference.as_deref(), Some("RF18539007547034"));
        assert_eq!(lines[1].name, "Hopper, Grace");
        assert_eq!(lines[1].reference, None);
        assert_eq!(lines[1].id.len(), 24, "a digest when the bank gives no id");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(parse(""), Err(StatementError::Empty));
        assert_eq!(
            parse("amount,currency\n1,EUR"),
            Err(StatementError::MissingColumn("reference"))
        );
        assert!(matches!(
            parse("amount,currency,reference\n1.001,EUR,x"),
            Err(StatementError::BadLine { line: 2, .. })
        ));
        assert!(matches!(
            parse("amount,currency,reference\n\"1,EUR,x"),
            Err(StatementError::BadLine { line: 2, .. })
        ));
    }
}
