//! An OVSDB client (RFC 7047 and ovsdb-server(7)'s extensions), written for
//! ironflow since Rust has no mature one.
//!
//! Pure parts — values, schemas, framing, messages, the replica — are apart
//! from the one module that does I/O ([`client`]).

pub mod client;
pub mod datum;
pub mod framing;
pub mod jsonrpc;
pub mod remote;
pub mod replica;
pub mod schema;

pub use client::{Client, ClientError, ClientOptions, ClientStats, Event, Payload};
pub use datum::{Atom, Datum, Row};
pub use remote::{parse_remotes, Remote};
pub use replica::Replica;
pub use schema::DatabaseSchema;
