//! The counter's repair loop: every second it stores the rows whose counts
//! changed since they were last stored (see `stats::dirty_videos`). A writer's
//! refresh after its commit is the fast path; this loop is what makes the
//! cache right when that refresh was lost (the writer crashed, or the counter
//! or Redis was down): within a round of both being back.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use crate::CounterService;

const ROUND: Duration = Duration::from_secs(1);
/// How long failures at start are only logged at debug level: in a fresh
/// deployment the counts tables may not be migrated yet when the loop starts.
const STARTUP: Duration = Duration::from_secs(30);

/// Keeps the loop running: it stops within a round of the last clone of
/// this being dropped (with the server that holds it).
#[derive(Clone, Default)]
pub struct Running(Arc<()>);

pub fn spawn(service: CounterService) -> Running {
    let running = Running::default();
    tokio::spawn(run(service, Arc::downgrade(&running.0)));
    running
}

async fn run(service: CounterService, running: Weak<()>) {
    let mut failing = false;
    let started = Instant::now();
    let mut stored_once = false;
    while running.strong_count() > 0 {
        match service.store_dirty().await {
            Ok(more) => {
                stored_once = true;
                if failing {
                    tracing::info!("dirty counts are stored again");
                    failing = false;
                }
                if more {
                    // A whole batch: a backlog is worked off at once, while
                    // rows that writers keep changing wait for the next round.
                    continue;
                }
            }
            Err(error) if !failing && (stored_once || started.elapsed() > STARTUP) => {
                tracing::warn!(%error, "could not store dirty counts; retrying every second");
                failing = true;
            }
            Err(error) => tracing::debug!(%error, "could not store dirty counts"),
        }
        tokio::time::sleep(ROUND).await;
    }
}
