//! Likes written in batches. Every like and unlike of this process goes
//! through a queue that [`WRITERS`] tasks take from: while their transactions
//! run, the likes that arrive wait, and the next transaction writes all of
//! them (up to [`MAX_BATCH`]). Under load a like then costs a fraction of the
//! statements and of the commit it costs alone, and the counter is told of
//! the changed counts once per batch; a like that finds a writer idle is
//! written at once, alone, as before. Each like is answered after its batch
//! committed and the counter stored its counts (or gave up in time), exactly
//! as a lone like is.
//!
//! A batch that fails as a whole (a lost connection, a statement refused) is
//! written again one like at a time, so one like cannot fail the others. A
//! like whose caller has too little time left to be answered is refused
//! before it is written. The tasks stop after [`IDLE`] without likes and are
//! started again by the next one.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use douyin_counts::{
    self as counts,
    stats::{UserStats, VideoStats},
};
use douyin_kit::{Error, Result, deadline, grpc::Clients};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use crate::repo::{InteractionRepo, Like};

/// Transactions of likes in flight at once: while one waits on the
/// database, the next batch is taken and written. Every batch locks its rows
/// in the same order, so two never deadlock each other.
const WRITERS: usize = 2;
/// Most likes one transaction writes.
const MAX_BATCH: usize = 64;
/// Likes waiting for the writer at most; more wait to be queued.
const QUEUE: usize = 1024;
/// How long the writer tasks wait for a like before they stop.
const IDLE: Duration = Duration::from_secs(10);

struct Queued {
    like: Like,
    deadline: Option<Instant>,
    answer: oneshot::Sender<Result<()>>,
}

#[derive(Clone)]
pub struct LikeWriter {
    repo: InteractionRepo,
    clients: Clients,
    queue: Arc<Mutex<Option<mpsc::Sender<Queued>>>>,
}

impl LikeWriter {
    pub fn new(repo: InteractionRepo, clients: Clients) -> Self {
        Self { repo, clients, queue: Arc::default() }
    }

    /// Writes `like` with whatever other likes are waiting; answers once it
    /// is committed and its counts are stored.
    pub async fn write(&self, like: Like) -> Result<()> {
        let (answer, answered) = oneshot::channel();
        let deadline = deadline::remaining().map(|left| Instant::now() + left);
        let mut queued = Queued { like, deadline, answer };
        // A writer that stopped meanwhile closed its queue: start another.
        for _ in 0..3 {
            let queue = self.queue();
            match queue.send(queued).await {
                Ok(()) => {
                    return answered.await.unwrap_or_else(|_| Err(Error::internal("the like writer stopped")));
                }
                Err(mpsc::error::SendError(back)) => queued = back,
            }
        }
        Err(Error::Unavailable("the like writer could not be started".into()))
    }

    /// The queue of running writer tasks, started when there are none.
    fn queue(&self) -> mpsc::Sender<Queued> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_ref() {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let (sender, receiver) = mpsc::channel(QUEUE);
                let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
                for _ in 0..WRITERS {
                    tokio::spawn(run(self.repo.clone(), self.clients.clone(), receiver.clone()));
                }
                *queue = Some(sender.clone());
                sender
            }
        }
    }
}

/// One of the [`WRITERS`] tasks: takes what is waiting (or the next like to
/// arrive) and writes it, while the other task's batch is in flight.
async fn run(repo: InteractionRepo, clients: Clients, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>) {
    loop {
        let mut taken = queue.lock().await;
        let first = match tokio::time::timeout(IDLE, taken.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => return,
            Err(_) => {
                // Idle: refuse new likes (their writers start new tasks),
                // then write what slipped in before the queue closed.
                taken.close();
                let mut rest = Vec::new();
                while let Ok(queued) = taken.try_recv() {
                    rest.push(queued);
                }
                drop(taken);
                while !rest.is_empty() {
                    let batch = rest.drain(..rest.len().min(MAX_BATCH)).collect();
                    write(&repo, &clients, batch).await;
                }
                return;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match taken.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        drop(taken);
        write(&repo, &clients, batch).await;
    }
}

/// Writes one batch and answers its likes once the counter has their counts;
/// the next batch starts as soon as this one committed.
async fn write(repo: &InteractionRepo, clients: &Clients, batch: Vec<Queued>) {
    let mut timely = Vec::with_capacity(batch.len());
    for q in batch {
        match deadline::check_commit_by(q.deadline) {
            Ok(()) => timely.push(q),
            Err(refused) => {
                let _ = q.answer.send(Err(refused));
            }
        }
    }
    if timely.is_empty() {
        return;
    }
    // The batch commits only while its most hurried caller can be answered.
    let deadline = timely.iter().filter_map(|q| q.deadline).min();
    let likes: Vec<Like> = timely.iter().map(|q| q.like).collect();
    let (outcomes, videos, users) = deadline::scope(deadline, async {
        if likes.len() > 1 {
            match repo.set_favorites(&likes).await {
                Ok(w) => return (w.outcomes, w.videos, w.users),
                Err(error) => {
                    tracing::warn!(%error, likes = likes.len(), "a batch of likes failed; writing them one at a time")
                }
            }
        }
        one_at_a_time(repo, &likes).await
    })
    .await;
    let clients = clients.clone();
    tokio::spawn(deadline::scope(deadline, async move {
        if !videos.is_empty() || !users.is_empty() {
            counts::store(&clients, &videos, &users).await;
        }
        for (q, outcome) in timely.into_iter().zip(outcomes) {
            let _ = q.answer.send(outcome);
        }
    }));
}

/// Each like in a transaction of its own: each one's outcome and the counts
/// rows they changed.
async fn one_at_a_time(repo: &InteractionRepo, likes: &[Like]) -> (Vec<Result<()>>, Vec<VideoStats>, Vec<UserStats>) {
    let (mut outcomes, mut videos, mut users) = (Vec::new(), Vec::new(), Vec::new());
    for l in likes {
        match repo.set_favorite(l.user_id, l.video_id, l.author_id, l.like).await {
            Ok(changed) => {
                let (v, u) = changed.unwrap_or_default();
                videos.extend(v);
                users.extend(u);
                outcomes.push(Ok(()));
            }
            Err(error) => outcomes.push(Err(error)),
        }
    }
    (outcomes, videos, users)
}
