//! ISO 20022 CAMT.053 bank statements (`BkToCstmrStmt`, versions .001.02 to .001.13: the
//! elements read here kept their names and places), read into the same [`Line`]s as CSV.
//!
//! Every booked credit (`CdtDbtInd` = `CRDT`, `Sts` = `BOOK` or absent) of every statement is
//! a line; a batch booking (an entry with several `TxDtls`) is one line per transaction, with
//! the transaction's own amount. Per line:
//! - `id`: the bank's reference — the transaction's `Refs/AcctSvcrRef`, else the entry's
//!   `AcctSvcrRef` or `NtryRef` — else a digest of the entry's XML (the same file uploaded twice
//!   gives the same ids); in a batch, with the transaction's index. Never the payer's
//!   `EndToEndId` (payers reuse it);
//! - the reference: the structured creditor reference (`RmtInf/Strd/CdtrRefInf/Ref`) if it is a
//!   valid `RF` reference, else one found in the unstructured text (`RmtInf/Ustrd`);
//! - the payer: `RltdPties/Dbtr/Nm` (or `Dbtr/Pty/Nm`, newer versions); the date: `BookgDt`.
//!
//! A credit without a readable amount and currency refuses the whole statement, naming the
//! entry (`line` is the entry's 1-based position in the file).

use super::statement::{LINES_MAX, Line, StatementError, find_reference};
use roxmltree::{Document, Node, ParsingOptions};
use sha2::{Digest, Sha256};

/// Whether `text` looks like a CAMT.053 document (rather than CSV).
pub fn looks_like_camt(text: &str) -> bool {
    let head = text.trim_start_matches('\u{feff}').trim_start();
    head.starts_with('<') && text.contains("BkToCstmrStmt")
}

/// Reads a CAMT.053 statement.
///
/// # Errors
/// [`StatementError::BadLine`] for XML that is not a CAMT.053 statement or a credit that cannot
/// be read; [`StatementError::TooManyLines`] past [`LINES_MAX`].
pub fn parse(text: &str) -> Result<Vec<Line>, StatementError> {
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, options).map_err(|e| StatementError::BadLine {
        line: 1,
        why: format!("not XML: {e}"),
    })?;
    let root = child(doc.root_element(), "BkToCstmrStmt").ok_or(StatementError::BadLine {
        line: 1,
        why: "not a CAMT.053 statement (no BkToCstmrStmt)".into(),
    })?;
    let mut lines = Vec::new();
    let entries = children(root, "Stmt").flat_map(|s| children(s, "Ntry"));
    for (index, entry) in entries.enumerate() {
        read_entry(text, entry, index + 1, &mut lines)?;
        if lines.len() > LINES_MAX {
            return Err(StatementError::TooManyLines);
        }
    }
    Ok(lines)
}

/// The credits of one entry.
fn read_entry(
    text: &str,
    entry: Node<'_, '_>,
    number: usize,
    lines: &mut Vec<Line>,
) -> Result<(), StatementError> {
    let bad = |why: String| StatementError::BadLine { line: number, why };
    if !is_credit(entry) || !booked(entry) {
        return Ok(());
    }
    let txs: Vec<Node<'_, '_>> = path(entry, &["NtryDtls"])
        .map(|d| children(d, "TxDtls").collect())
        .unwrap_or_default();
    let entry_ref = text_at(entry, &["AcctSvcrRef"]).or_else(|| text_at(entry, &["NtryRef"]));
    let digest = || {
        let range = entry.range();
        data_encoding::HEXLOWER.encode(&Sha256::digest(&text.as_bytes()[range])[..12])
    };
    let date = text_at(entry, &["BookgDt", "Dt"])
        .or_else(|| text_at(entry, &["BookgDt", "DtTm"]))
        .map(|d| d.chars().take(10).collect())
        .unwrap_or_default();
    if txs.is_empty() {
        let (minor, currency) = amount(entry).map_err(bad)?;
        let id = entry_ref.unwrap_or_else(digest);
        lines.push(line(id, minor, currency, None, date));
        return Ok(());
    }
    let batch = txs.len() > 1;
    for (i, tx) in txs.into_iter().enumerate() {
        if !is_credit(tx) {
            continue;
        }
        let (minor, currency) = match tx_amount(tx) {
            Some(found) => found.map_err(bad)?,
            None if !batch => amount(entry).map_err(bad)?,
            None => return Err(bad(format!("transaction {} has no amount", i + 1))),
        };
        // The bank's references only (a payer's EndToEndId is not unique); in a batch the
        // transaction's index keeps the ids apart.
        let base = text_at(tx, &["Refs", "AcctSvcrRef"])
            .or_else(|| entry_ref.clone())
            .unwrap_or_else(digest);
        let id = if batch {
            format!("{base}/{}", i + 1)
        } else {
            base
        };
        lines.push(line(id, minor, currency, Some(tx), date.clone()));
    }
    Ok(())
}

fn line(
    id: String,
    amount_minor: i64,
    currency: String,
    tx: Option<Node<'_, '_>>,
    date: String,
) -> Line {
    let unstructured: Vec<String> = tx
        .and_then(|t| path(t, &["RmtInf"]))
        .map(|r| {
            children(r, "Ustrd")
                .filter_map(|u| u.text())
                .map(str::trim)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let structured = tx
        .and_then(|t| path(t, &["RmtInf"]))
        .into_iter()
        .flat_map(|r| children(r, "Strd"))
        .filter_map(|s| text_at(s, &["CdtrRefInf", "Ref"]))
        .find_map(|r| super::reference::parse(&r).ok());
    let reference_text = unstructured.join(" ");
    let reference = structured.or_else(|| find_reference(&reference_text));
    let name = tx
        .and_then(|t| {
            text_at(t, &["RltdPties", "Dbtr", "Nm"])
                .or_else(|| text_at(t, &["RltdPties", "Dbtr", "Pty", "Nm"]))
        })
        .unwrap_or_default();
    Line {
        id: id.chars().take(64).collect(),
        amount_minor,
        currency,
        reference,
        reference_text,
        date: date.chars().take(32).collect(),
        name: name.chars().take(140).collect(),
    }
}

/// `CdtDbtInd` is `CRDT` (or absent on a transaction, which follows its entry).
fn is_credit(node: Node<'_, '_>) -> bool {
    text_at(node, &["CdtDbtInd"]).is_none_or(|c| c == "CRDT")
}

/// `Sts` is `BOOK` (.02: text; newer: `Sts/Cd`), or absent.
fn booked(entry: Node<'_, '_>) -> bool {
    match child(entry, "Sts") {
        None => true,
        Some(sts) => {
            let code = text_at(sts, &["Cd"]).or_else(|| sts.text().map(|t| t.trim().to_owned()));
            code.as_deref() == Some("BOOK")
        }
    }
}

/// The entry's `Amt` with its `Ccy`.
fn amount(node: Node<'_, '_>) -> Result<(i64, String), String> {
    let amt = child(node, "Amt").ok_or("no Amt")?;
    decimal(amt)
}

/// A transaction's own amount: `AmtDtls/TxAmt/Amt` (.02), else its `Amt` (newer).
fn tx_amount(tx: Node<'_, '_>) -> Option<Result<(i64, String), String>> {
    path(tx, &["AmtDtls", "TxAmt", "Amt"])
        .or_else(|| child(tx, "Amt"))
        .map(decimal)
}

fn decimal(amt: Node<'_, '_>) -> Result<(i64, String), String> {
    let currency = amt
        .attribute("Ccy")
        .ok_or("Amt without Ccy")?
        .to_uppercase();
    let text = amt.text().unwrap_or_default().trim();
    let minor =
        crate::money::from_decimal(text, &currency).map_err(|e| format!("amount {text:?}: {e}"))?;
    Ok((minor, currency))
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn path<'a, 'i>(node: Node<'a, 'i>, names: &[&str]) -> Option<Node<'a, 'i>> {
    names.iter().try_fold(node, |n, name| child(n, name))
}

fn text_at(node: Node<'_, '_>, names: &[&str]) -> Option<String> {
    path(node, names)
        .and_then(|n| n.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
