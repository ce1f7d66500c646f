//! Bank transfer: the structured creditor reference a buyer puts on the transfer
//! (`reference.rs`); statement parsing and matching follow (issue 13).

pub mod reference;
