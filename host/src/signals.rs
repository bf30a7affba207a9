//! Signals: the changes one part of the server announces to the parts that keep something in
//! memory because of them (an attempt running for a job, a trigger's next fire time, a
//! handler's compiled code, the cache of API keys).
//!
//! A signal names what changed, never its new state: a receiver reads that from the store.
//! So a receiver that missed signals (it fell behind) only has to re-read everything it
//! keeps, and a signal relayed from another node over a shared store means exactly what one
//! from this process means. Signals travel over a broadcast channel in one process; the
//! PostgreSQL store relays them between the nodes on one database
//! ([`crate::store::postgres::PgStore::relay_signals`]).
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
/// Pause before a follower that failed to reload tries again, reloading everything.
const RELOAD_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

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

impl Signal {
    /// The signal as text, for relays between nodes (`job-cancelled:17`, `key-changed:ab12`).
    pub fn encode(&self) -> String {
        match self {
            Signal::JobCancelled(id) => format!("job-cancelled:{id}"),
            Signal::TriggerChanged(id) => format!("trigger-changed:{id}"),
            Signal::HandlerChanged(id) => format!("handler-changed:{id}"),
            Signal::KeyChanged(id) => format!("key-changed:{id}"),
        }
    }

    /// A signal from its text; `None` for text no version of [`Signal::encode`] wrote.
    pub fn decode(text: &str) -> Option<Signal> {
        let (kind, id) = text.split_once(':')?;
        match kind {
            "job-cancelled" => id.parse().ok().map(Signal::JobCancelled),
            "trigger-changed" => id.parse().ok().map(Signal::TriggerChanged),
            "handler-changed" => Some(Signal::HandlerChanged(id.to_string())),
            "key-changed" => Some(Signal::KeyChanged(id.to_string())),
            _ => None,
        }
    }
}

/// What travels on the bus: a signal or news that signals were missed, and whether it came
/// from this process or was relayed from another node.
#[derive(Clone, Debug)]
struct Envelope {
    received: Received,
    relayed: bool,
}

/// Where signals are published; every part that acts on them subscribes.
#[derive(Clone, Debug)]
pub struct Signals {
    sender: broadcast::Sender<Envelope>,
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
        let _ = self.sender.send(Envelope {
            received: Received::Signal(signal),
            relayed: false,
        });
    }

    /// Hands on what a relay received from another node: a signal, or news that some were
    /// missed there (every subscriber then re-reads).
    pub fn publish_relayed(&self, received: Received) {
        let _ = self.sender.send(Envelope {
            received,
            relayed: true,
        });
    }

    /// Receives every signal published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            local_only: false,
        }
    }

    /// Receives the signals published in this process from now on, not the relayed ones: what
    /// a relay sends to other nodes.
    pub fn subscribe_local(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            local_only: true,
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
    receiver: broadcast::Receiver<Envelope>,
    local_only: bool,
}

impl Subscription {
    /// Calls `reload` with the id of each change `pick` takes from a signal, and with `None`
    /// (everything) after missed signals, until `stopping` turns true or no publisher is
    /// left. A failed reload is logged and everything is reloaded a second later, until a
    /// reload succeeds.
    pub async fn follow<E, Reloaded>(
        mut self,
        mut stopping: watch::Receiver<bool>,
        pick: impl Fn(Signal) -> Option<String>,
        mut reload: impl FnMut(Option<String>) -> Reloaded,
    ) where
        E: std::fmt::Display,
        Reloaded: std::future::Future<Output = Result<(), E>>,
    {
        let mut failed = false;
        loop {
            let retry = async {
                if failed {
                    tokio::time::sleep(RELOAD_RETRY).await
                } else {
                    std::future::pending().await
                }
            };
            let received = tokio::select! {
                received = self.recv() => received,
                () = retry => Some(Received::Missed),
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
            failed = outcome.is_err();
            if let Err(error) = outcome {
                tracing::error!(%error, "cannot bring what a signal named up to date; retrying");
            }
        }
    }

    /// The next signal; `None` once no publisher is left.
    pub async fn recv(&mut self) -> Option<Received> {
        loop {
            match self.receiver.recv().await {
                Ok(envelope) if self.local_only && envelope.relayed => continue,
                Ok(envelope) => return Some(envelope.received),
                Err(broadcast::error::RecvError::Lagged(_)) => return Some(Received::Missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
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

    #[test]
    fn every_signal_reads_back_from_its_text() {
        let signals = [
            Signal::JobCancelled(17),
            Signal::TriggerChanged(3),
            Signal::HandlerChanged("h0123".into()),
            Signal::KeyChanged("ab:12".into()),
        ];
        for signal in signals {
            assert_eq!(Signal::decode(&signal.encode()), Some(signal));
        }
        assert_eq!(Signal::decode("job-cancelled:x"), None);
        assert_eq!(Signal::decode("lease-stolen:1"), None);
    }

    #[tokio::test]
    async fn a_local_subscription_skips_what_was_relayed_from_other_nodes() {
        let signals = Signals::default();
        let mut local = signals.subscribe_local();
        let mut every = signals.subscribe();
        signals.publish_relayed(Received::Signal(Signal::TriggerChanged(1)));
        signals.publish(Signal::TriggerChanged(2));
        let second = Some(Received::Signal(Signal::TriggerChanged(2)));
        assert_eq!(local.recv().await, second);
        let first = Some(Received::Signal(Signal::TriggerChanged(1)));
        assert_eq!(every.recv().await, first);
        assert_eq!(every.recv().await, second);
    }

    #[tokio::test]
    async fn a_follower_whose_reload_failed_reloads_everything_until_it_succeeds() {
        let signals = Signals::default();
        let (_stop, stopping) = watch::channel(false);
        let reloads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = reloads.clone();
        let pick = |signal| match signal {
            Signal::KeyChanged(id) => Some(id),
            _ => None,
        };
        let reload = move |only: Option<String>| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(only);
                // The store is away for the first two reloads.
                if seen.len() <= 2 {
                    Err("the store is away")
                } else {
                    Ok(())
                }
            }
        };
        tokio::spawn(signals.subscribe().follow(stopping, pick, reload));
        signals.publish(Signal::KeyChanged("k".into()));
        for _ in 0..1000 {
            if reloads.lock().unwrap().len() >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(
            *reloads.lock().unwrap(),
            [Some("k".to_string()), None, None]
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
