//! OVN's logical-flow language (`man ovn-sb`, Logical_Flow `match` and
//! `actions`): lexer, symbol table, match expressions and their
//! normalisation, and actions.

pub mod action_check;
pub mod actions;
pub mod check;
pub mod cursor;
pub mod expr;
pub mod lexer;
#[cfg(test)]
mod mangle;
pub mod names;
pub mod normalize;
pub mod prereqs;
pub mod symbols;
