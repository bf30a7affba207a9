//! Signals: the changes one part of the server announces to the parts that keep something in
//! memory because of them (an attempt running for a job, a trigger's next fire time, a
//! handler's compiled code, the cache of API keys).
//!
//! A signal names what changed, never its new state: a receiver reads that from the store.
//! So a receiver that missed signals (it fell behind) only has to re-read everything it
//! keeps, and a signal relayed from another node over a shared store would mean exactly what
//! one from this process means. Signals travel over a broadcast channel in one process;
//! nothing relays them between processes yet.
//!
//! A job becoming ready is not a signal: waking a waiting activation belongs to the queue port
//! ([`crate::store::JobQueue::activate`]), because the wake-up must not be lost between the
//! moment a wait finds nothing and the moment it starts to listen; only the store that holds
//! the job can order the two (the embedded store's writer does; a database does it with the
//! notification sent in the transaction that makes the job ready).

use tokio::sync::{broadcast, watch};

use crate::job::JobId;
use crate::trigger::TriggerId;

/// Signals a receiver may fall behind by before it misses some (and must re-read).
const BACKLOG: usize = 1024;

/// A change announced to the rest of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A job was cancelled: an attempt running for it should stop.
    JobCancelled(JobId),
    /// A trigger was created, changed or removed.
    TriggerChanged(TriggerId),
    /// A handler (by id) was deployed, got a new version, or was removed.
    HandlerChanged(String),
    /// An API key (by id) was created or revoked.
    KeyChanged(String),
}

/// Where signals are published; every part that acts on them subscribes.
#[derive(Clone, Debug)]
pub struct Signals {
    sender: broadcast::Sender<Signal>,
}

impl Default for Signals {
    fn default() -> Signals {
        Signals {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Signals {
    /// Announces a change to every subscriber; nobody listening is not an error.
    pub fn publish(&self, signal: Signal) {
        let _ = self.sender.send(signal);
    }

    /// Receives every signal published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
        }
    }
}

/// What a subscriber receives next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Signal(Signal),
    /// Signals were published that this subscriber will never see: it must re-read whatever
    /// it keeps from the store.
    Missed,
}

/// One subscriber's place in the stream of signals.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Signal>,
}

impl Subscription {
    /// Calls `reload` with the id of each change `pick` takes from a signal, and with `None`
    /// (everything) after missed signals, until `stopping` turns true or no publisher is
    /// left. A failed reload is logged; the next signal tries again.
    pub async fn follow<E, Reloaded>(
        mut self,
        mut stopping: watch::Receiver<bool>,
        pick: impl Fn(Signal) -> Option<String>,
        mut reload: impl FnMut(Option<String>) -> Reloaded,
    ) where
        E: std::fmt::Display,
        Reloaded: std::future::Future<Output = Result<(), E>>,
    {
        loop {
            let received = tokio::select! {
                received = self.recv() => received,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let outcome = match received {
                None => return,
                Some(Received::Signal(signal)) => match pick(signal) {
                    Some(id) => reload(Some(id)).await,
                    None => Ok(()),
                },
                Some(Received::Missed) => reload(None).await,
            };
            if let Err(error) = outcome {
                tracing::error!(%error, "cannot bring what a signal named up to date");
            }
        }
    }

    /// The next signal; `None` once no publisher is left.
    pub async fn recv(&mut self) -> Option<Received> {
        match self.receiver.recv().await {
            Ok(signal) => Some(Received::Signal(signal)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Received::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_receives_what_is_published_after_it_subscribed() {
        let signals = Signals::default();
        signals.publish(Signal::JobCancelled(1));
        let (mut first, mut second) = (signals.subscribe(), signals.subscribe());
        signals.publish(Signal::TriggerChanged(7));
        let expected = Some(Received::Signal(Signal::TriggerChanged(7)));
        assert_eq!(first.recv().await, expected);
        assert_eq!(second.recv().await, expected);
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_it_missed_signals() {
        let signals = Signals::default();
        let mut late = signals.subscribe();
        for id in 0..=BACKLOG as u64 {
            signals.publish(Signal::JobCancelled(id));
        }
        assert_eq!(late.recv().await, Some(Received::Missed));
        assert_eq!(
            late.recv().await,
            Some(Received::Signal(Signal::JobCancelled(1)))
        );
    }

    #[tokio::test]
    async fn a_subscription_ends_when_no_publisher_is_left() {
        let signals = Signals::default();
        let mut subscription = signals.subscribe();
        drop(signals);
        assert_eq!(subscription.recv().await, None);
    }
}
