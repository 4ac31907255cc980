//! ironflow's control plane: everything that is not the packet hot path.
//!
//! Owns the OVSDB client ([`ovsdb`]), the Southbound follower that keeps a
//! typed copy of the SB tables and turns it into a
//! [`LogicalNetwork`](ironflow_pipeline::LogicalNetwork) ([`sb`]), and the
//! `ironflow` command line ([`cli`]), chassis registration and port claims
//! ([`chassis`]), attaching interfaces to port backends ([`attach`]), the
//! node daemon ([`daemon`], with its controller side for the actions that
//! make or learn from packets, ovn-controller's pinctrl) and its
//! management socket ([`mgmt`]).

pub mod attach;
pub mod chassis;
pub mod cli;
pub mod daemon;
pub mod mgmt;
pub mod ovsdb;
pub mod sb;
pub mod tables;
