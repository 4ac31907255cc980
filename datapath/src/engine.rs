//! What the workers of one datapath share: the published [`Config`], the
//! conntrack table, and the recirculation ids naming frozen states.
//!
//! Publishing is an atomic pointer swap (arc-swap): workers load the
//! current config once per batch and never block the control thread, nor
//! it them.

use crate::config::Config;
use crate::conntrack::{Conntrack, CtConfig};
use arc_swap::ArcSwap;
use ironflow_pipeline::interp::FrozenState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Frozen states kept before the table starts over (ids stay unique: a
/// megaflow holding a forgotten id just stops being reached).
const MAX_RECIRC_IDS: usize = 1 << 20;

/// Recirculation ids for the current config generation.
struct RecircTable {
    generation: u64,
    ids: HashMap<FrozenState, u32>,
    next: u32,
}

/// The shared half of a datapath.
pub struct Engine {
    config: ArcSwap<Config>,
    generation: AtomicU64,
    pub conntrack: Conntrack,
    recirc: Mutex<RecircTable>,
    epoch: Instant,
}

impl Engine {
    pub fn new(config: Config, ct: CtConfig) -> Arc<Engine> {
        let mut config = config;
        config.generation = 1;
        Arc::new(Engine {
            config: ArcSwap::from_pointee(config),
            generation: AtomicU64::new(1),
            conntrack: Conntrack::new(ct),
            recirc: Mutex::new(RecircTable {
                generation: 1,
                ids: HashMap::new(),
                next: 1,
            }),
            epoch: Instant::now(),
        })
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The generation in force (cheap: workers poll it every batch).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts a new config in force; workers flush their caches.
    pub fn publish(&self, mut config: Config) {
        let generation = self.generation.load(Ordering::Acquire) + 1;
        config.generation = generation;
        self.config.store(Arc::new(config));
        self.generation.store(generation, Ordering::Release);
    }

    /// The id of a frozen state under config `generation`.
    pub fn recirc_id(&self, generation: u64, state: FrozenState) -> u32 {
        let mut t = self.recirc.lock().unwrap_or_else(|e| e.into_inner());
        if t.generation != generation || t.ids.len() >= MAX_RECIRC_IDS {
            t.generation = generation;
            t.ids.clear();
        }
        if let Some(&id) = t.ids.get(&state) {
            return id;
        }
        let id = t.next;
        // 0 means "first pass"; wrapping after 4 billion states is harmless
        // because caches are flushed far more often than that.
        t.next = t.next.wrapping_add(1).max(1);
        t.ids.insert(state, id);
        id
    }

    /// Nanoseconds since the engine started (conntrack's clock).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}
