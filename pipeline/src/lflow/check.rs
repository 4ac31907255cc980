//! `ironflow lflows check`: compiles every logical flow of a network and
//! reports what failed.

use crate::network::LogicalNetwork;
use crate::program::{compile, Failure};

/// Totals over a network, plus every failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub flows: usize,
    pub ok: usize,
    pub failures: Vec<Failure>,
    /// Flows whose match can never hold on any of their datapaths (for
    /// example `ip4 && ip6`); they compile, to nothing.
    pub never_match: usize,
    /// Classifier rules the matches expand to, over all datapaths.
    pub conjunctions: usize,
}

impl CheckReport {
    pub fn failed(&self) -> usize {
        self.flows - self.ok
    }
}

pub fn check_network(net: &LogicalNetwork) -> CheckReport {
    let program = compile(net);
    CheckReport {
        flows: program.flows,
        ok: program.flows - program.failures.len(),
        never_match: program.never_match,
        conjunctions: program.rules,
        failures: program.failures,
    }
}
