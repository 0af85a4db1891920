//! A job's data as its client and its provider exchange it off chain: the rules both sides
//! share, in one crate neither side owns (issue 12: the client no longer reaches into the
//! node for them).
//!
//! - [`seal`]: the sealed-blob format: encrypted to one recipient, in pieces authenticated one
//!   by one.
//! - [`blob`]: which blob is which (names computed from the chain) and who wrote it (the
//!   author's signature in the header).
//! - [`keys`]: the encryption key derived from a key file.
//! - [`output`]: a result's plaintext and the commitment posted for it.
//!
//! No I/O: the node stores and serves blobs, the client uploads and fetches them.

pub mod blob;
pub mod keys;
pub mod output;
pub mod seal;

pub use blob::{author, check_author, name, seal_signed, Part};
pub use keys::{encryption_public, encryption_secret};
pub use output::Output;
