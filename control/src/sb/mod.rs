//! The Southbound database as ironflow sees it: typed tables kept current
//! by a follower, and the logical network built from them.

pub mod build;
pub mod decode;
pub mod follow;
pub mod tables;

pub use build::build_network;
pub use follow::{read_once, FollowOptions, MonitorMethod, SbFollower, SbView, Session};
