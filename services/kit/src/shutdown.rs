//! Shutdown signalling. A process stops in two steps that every server and
//! background task of it watches on one channel: first it becomes a lame duck
//! (health reports NOT_SERVING, `/readyz` fails, but every listener still
//! accepts and serves, so callers that have not yet seen the pod leave DNS lose
//! nothing), then it stops accepting and drains what is in flight.

use std::time::Duration;

use tokio::sync::watch;

/// Where a process is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// Reports NOT_SERVING, still accepts and serves.
    LameDuck,
    /// Stops accepting; in-flight requests finish.
    Stopping,
}

/// A cloneable handle that resolves once shutdown has begun.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<Phase>,
}

/// The sending half, kept by whoever decides when to stop.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<Phase>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(Phase::Running);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Stops accepting now (a lame-duck period, if any, ends).
    pub fn trigger(&self) {
        self.tx.send_if_modified(|phase| advance(phase, Phase::Stopping));
    }

    /// Reports NOT_SERVING while still serving; [`Self::trigger`] stops.
    pub fn lame_duck(&self) {
        self.tx.send_if_modified(|phase| advance(phase, Phase::LameDuck));
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown { rx: self.tx.subscribe() }
    }
}

fn advance(phase: &mut Phase, to: Phase) -> bool {
    let moved = *phase < to;
    *phase = (*phase).max(to);
    moved
}

impl Shutdown {
    /// Resolves when the process stops accepting (immediately if it has).
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|phase| *phase >= Phase::Stopping).await;
    }

    /// Resolves when shutdown begins: the lame-duck period or, without one,
    /// the stop itself.
    pub async fn began(mut self) {
        let _ = self.rx.wait_for(|phase| *phase >= Phase::LameDuck).await;
    }

    /// Whether shutdown has begun (lame duck or stopping).
    pub fn is_shutting_down(&self) -> bool {
        *self.rx.borrow() >= Phase::LameDuck
    }
}

/// On the first SIGTERM or SIGINT: a lame-duck period of `lame_duck`, then the
/// stop. A second signal during the lame-duck period stops at once.
pub async fn on_signal(trigger: ShutdownTrigger, lame_duck: Duration) {
    signal().await;
    tracing::info!(lame_duck_secs = lame_duck.as_secs_f64(), "shutdown signal received; reporting NOT_SERVING");
    trigger.lame_duck();
    tokio::select! {
        () = tokio::time::sleep(lame_duck) => {}
        () = signal() => tracing::info!("second shutdown signal; stopping now"),
    }
    tracing::info!("no longer accepting; draining");
    trigger.trigger();
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_lame_duck_period_comes_before_the_stop() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_shutting_down());
        trigger.lame_duck();
        assert!(shutdown.is_shutting_down());
        shutdown.clone().began().await;
        let stop = tokio::spawn(shutdown.clone().wait());
        tokio::task::yield_now().await;
        assert!(!stop.is_finished(), "a lame duck still accepts");
        trigger.trigger();
        stop.await.unwrap();
        // Going back is impossible: a later lame_duck() leaves it stopping.
        trigger.lame_duck();
        shutdown.wait().await;
    }

    #[tokio::test]
    async fn a_stop_without_lame_duck_also_begins_shutdown() {
        let (trigger, shutdown) = channel();
        trigger.trigger();
        shutdown.clone().began().await;
        shutdown.wait().await;
    }
}
