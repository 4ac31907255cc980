//! Conntrack tests.
