//! ironflow's control plane: everything that is not the packet hot path.
//!
//! Owns the OVSDB client ([`ovsdb`]), the Southbound follower that keeps a
//! typed copy of the SB tables and turns it into a
//! [`LogicalNetwork`](ironflow_pipeline::LogicalNetwork) ([`sb`]), and the
//! `ironflow` command line ([`cli`]), and chassis registration
//! ([`chassis`]). Later: port claiming, controller actions (ovn-controller's pinctrl), the daemon and
//! its management socket.

pub mod chassis;
pub mod cli;
pub mod daemon;
pub mod mgmt;
pub mod ovsdb;
pub mod sb;
