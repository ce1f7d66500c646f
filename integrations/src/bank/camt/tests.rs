use super::*;
use crate::bank::reference::creditor_reference;

/// A camt.053.001.02 statement as German and Dutch banks send it: a single credit with a
/// structured reference, a batch booking of two transfers (one reference printed in groups in
/// the unstructured text), a debit, and a pending credit.
fn camt_02(structured: &str, printed: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>STMT-2026-12-02</MsgId><CreDtTm>2026-12-02T18:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>2026-12-02-DE89370400440532013000</Id>
      <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>
      <Ntry>
        <Amt Ccy="EUR">85.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-12-02</Dt></BookgDt>
        <AcctSvcrRef>2026120200001</AcctSvcrRef>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>
          <RltdPties><Dbtr><Nm>Ada Lovelace</Nm></Dbtr></RltdPties>
          <RmtInf><Strd><CdtrRefInf>
            <Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>ISO</Issr></Tp>
            <Ref>{structured}</Ref>
          </CdtrRefInf></Strd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">130.50</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>BOOK</Sts>
        <BookgDt><Dt>2026-12-02</Dt></BookgDt>
        <AcctSvcrRef>2026120200002</AcctSvcrRef>
        <NtryDtls>
          <TxDtls>
            <AmtDtls><TxAmt><Amt Ccy="EUR">45.50</Amt></TxAmt></AmtDtls>
            <RltdPties><Dbtr><Nm>Grace &amp; Co</Nm></Dbtr></RltdPties>
            <RmtInf><Ustrd>Tickets {printed}</Ustrd><Ustrd>thanks</Ustrd></RmtInf>
          </TxDtls>
          <TxDtls>
            <AmtDtls><TxAmt><Amt Ccy="EUR">85.00</Amt></TxAmt></AmtDtls>
            <RltdPties><Dbtr><Nm>Someone</Nm></Dbtr></RltdPties>
            <RmtInf><Ustrd>rent december</Ustrd></RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">3.20</Amt>
        <CdtDbtInd>DBIT</CdtDbtInd>
        <Sts>BOOK</Sts>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">10.00</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts>PDNG</Sts>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>"#
    )
}

#[test]
fn reads_credits_batches_and_both_kinds_of_reference() {
    let a = creditor_reference("5390075470").unwrap();
    let b = creditor_reference("K3D9Q2ZP7X").unwrap();
    let printed: Vec<String> = b
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let text = camt_02(&a, &printed.join(" "));
    assert!(looks_like_camt(&text));
    let lines = parse(&text).unwrap();
    assert_eq!(
        lines.len(),
        3,
        "the debit and the pending credit are skipped: {lines:?}"
    );
    assert_eq!(lines[0].id, "2026120200001");
    assert_eq!(
        (lines[0].amount_minor, lines[0].currency.as_str()),
        (8500, "EUR")
    );
    assert_eq!(lines[0].reference.as_deref(), Some(a.as_str()));
    assert_eq!(lines[0].name, "Ada Lovelace");
    assert_eq!(lines[0].date, "2026-12-02");
    // A batch: one line per transfer, each with its own amount and id.
    assert_eq!(lines[1].id, "2026120200002/1");
    assert_eq!(lines[1].amount_minor, 4550);
    assert_eq!(lines[1].reference.as_deref(), Some(b.as_str()));
    assert_eq!(lines[1].name, "Grace & Co");
    assert_eq!(lines[2].id, "2026120200002/2");
    assert_eq!(lines[2].reference, None);
    // The same file again: the same ids.
    assert_eq!(parse(&text).unwrap(), lines);
}

#[test]
fn reads_newer_versions_and_digests_lines_without_ids() {
    let a = creditor_reference("AB12").unwrap();
    let text = format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt><Stmt>
        <Ntry><Amt Ccy="JPY">1200</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
          <BookgDt><DtTm>2026-12-03T09:30:00+01:00</DtTm></BookgDt>
          <NtryDtls><TxDtls><Amt Ccy="JPY">1200</Amt><CdtDbtInd>CRDT</CdtDbtInd>
            <RltdPties><Dbtr><Pty><Nm>Yuki</Nm></Pty></Dbtr></RltdPties>
            <RmtInf><Ustrd>{a}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
        </Stmt></BkToCstmrStmt></Document>"#
    );
    let lines = parse(&text).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (lines[0].amount_minor, lines[0].currency.as_str()),
        (1200, "JPY")
    );
    assert_eq!(lines[0].name, "Yuki");
    assert_eq!(lines[0].date, "2026-12-03");
    assert_eq!(lines[0].reference.as_deref(), Some(a.as_str()));
    assert_eq!(lines[0].id.len(), 24, "a digest: {}", lines[0].id);
}

#[test]
fn refuses_what_it_cannot_read() {
    let not_camt = parse("<Document><Other/></Document>");
    assert!(matches!(
        not_camt,
        Err(StatementError::BadLine { line: 1, .. })
    ));
    assert!(matches!(
        parse("<Document><BkToCstmrStmt>"),
        Err(StatementError::BadLine { .. })
    ));
    // A DTD (and with it entity expansion) is refused.
    let dtd = r#"<!DOCTYPE d [<!ENTITY x "y">]><Document><BkToCstmrStmt/></Document>"#;
    assert!(parse(dtd).is_err());
    let no_currency = "<Document><BkToCstmrStmt><Stmt><Ntry><Amt>1.00</Amt>\
        <CdtDbtInd>CRDT</CdtDbtInd></Ntry><Ntry><Amt Ccy=\"EUR\">1.001</Amt>\
        <CdtDbtInd>CRDT</CdtDbtInd></Ntry></Stmt></BkToCstmrStmt></Document>";
    assert!(matches!(
        parse(no_currency),
        Err(StatementError::BadLine { line: 1, .. })
    ));
    assert!(!looks_like_camt("id,amount\n1,2"));
}
