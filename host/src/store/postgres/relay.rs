//! Signals between nodes over PostgreSQL: what this node publishes goes out with NOTIFY on
//! one channel; what other nodes send arrives on a LISTEN connection of this node's own and is
//! published here as relayed. Whenever signals may have been lost (the listening connection
//! was (re)made, a send failed), every node is told to re-read instead.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::{PgStore, db_error};
use crate::signals::{Received, Signal, Signals, Subscription};
use crate::store::StoreError;

/// The channel every node listens on.
const CHANNEL: &str = "jobhost_signals";
/// What a notification says for "signals were missed: re-read".
const MISSED: &str = "missed";
/// Pause before the listening connection is made again, or a send retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long the database may take to answer the relay; longer counts as a lost connection.
const REPLY_WITHIN: Duration = Duration::from_secs(10);
/// How often the listening connection is checked: a connection that died silently (a
/// dropped route, a fail-over behind an address) delivers nothing and reports no error.
const CHECK_EVERY: Duration = Duration::from_secs(5);

impl PgStore {
    /// Relays signals between `signals` and every other node on this database until
    /// `stopping`. Once this node listens, its subscribers are told to re-read (what changed
    /// before cannot have reached them).
    pub fn relay_signals(
        &self,
        signals: Signals,
        stopping: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let node = hex::encode(rand::random::<[u8; 8]>());
        let outgoing = send_out(
            self.pool.clone(),
            node.clone(),
            signals.subscribe_local(),
            stopping.clone(),
        );
        let incoming = listen(self.config.clone(), node, signals, stopping);
        tokio::spawn(async move {
            tokio::join!(outgoing, incoming);
        })
    }
}

/// Sends every signal published on this node to the others.
async fn send_out(
    pool: deadpool_postgres::Pool,
    node: String,
    mut local: Subscription,
    mut stopping: watch::Receiver<bool>,
) {
    // A signal that could not be sent is owed as "missed" to the other nodes, and sent again
    // until it goes out.
    let mut owe_missed = false;
    loop {
        let retry = async {
            if owe_missed {
                tokio::time::sleep(RETRY_AFTER).await
            } else {
                std::future::pending().await
            }
        };
        let received = tokio::select! {
            received = local.recv() => received,
            () = retry => Some(Received::Missed),
            () = stopped(&mut stopping) => return,
        };
        let Some(received) = received else { return };
        let text = match received {
            Received::Signal(signal) if !owe_missed => signal.encode(),
            _ => MISSED.to_string(),
        };
        let payload = format!("{node}:{text}");
        let sent = tokio::select! {
            sent = tokio::time::timeout(REPLY_WITHIN, notify(&pool, &payload)) => sent,
            () = stopped(&mut stopping) => return,
        };
        match sent {
            Ok(Ok(())) => owe_missed = false,
            Ok(Err(error)) => {
                tracing::warn!(%error, "a signal could not be sent to the other nodes; retrying");
                owe_missed = true;
            }
            Err(_) => {
                tracing::warn!("the database did not take a signal in time; retrying");
                owe_missed = true;
            }
        }
    }
}

async fn notify(pool: &deadpool_postgres::Pool, payload: &str) -> Result<(), StoreError> {
    let client = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Publishes here what the other nodes send, on a connection of its own, made again when it
/// fails.
async fn listen(
    config: tokio_postgres::Config,
    node: String,
    signals: Signals,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        match listen_once(&config, &node, &signals, &mut stopping).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, "lost the connection that receives other nodes' signals")
            }
        }
        tokio::select! {
            () = stopped(&mut stopping) => return,
            () = tokio::time::sleep(RETRY_AFTER) => {}
        }
    }
}

/// Listens until `stopping` (`Ok`) or until the connection fails.
async fn listen_once(
    config: &tokio_postgres::Config,
    node: &str,
    signals: &Signals,
    stopping: &mut watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let mut config = config.clone();
    config
        .connect_timeout(REPLY_WITHIN)
        .keepalives(true)
        .keepalives_idle(CHECK_EVERY)
        .keepalives_interval(CHECK_EVERY)
        .keepalives_retries(2);
    let connecting = tokio::select! {
        connecting = config.connect(tokio_postgres::NoTls) => connecting,
        () = stopped(stopping) => return Ok(()),
    };
    let (client, mut connection) = connecting.map_err(db_error)?;
    let (messages, mut received) = mpsc::unbounded_channel();
    // The connection delivers notifications only while it is polled.
    let driver = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            let failed = message.is_err();
            let _ = messages.send(message);
            if failed {
                return;
            }
        }
    });
    let listen_statement = format!("LISTEN {CHANNEL}");
    let listen = tokio::time::timeout(REPLY_WITHIN, client.batch_execute(&listen_statement));
    let listening = tokio::select! {
        listening = listen => match listening {
            Ok(listening) => listening.map_err(db_error),
            Err(_) => Err(StoreError::Unavailable("LISTEN took too long".into())),
        },
        () = stopped(stopping) => {
            driver.abort();
            return Ok(());
        }
    };
    if let Err(error) = listening {
        driver.abort();
        return Err(error);
    }
    signals.publish_relayed(Received::Missed);
    let mut checks = tokio::time::interval(CHECK_EVERY);
    let outcome = loop {
        let message = tokio::select! {
            message = received.recv() => message,
            _ = checks.tick() => {
                let check = tokio::time::timeout(REPLY_WITHIN, client.simple_query("SELECT 1"));
                match check.await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(error)) => break Err(db_error(error)),
                    Err(_) => break Err(StoreError::Unavailable("the database stopped answering".into())),
                }
            }
            () = stopped(stopping) => break Ok(()),
        };
        match message {
            Some(Ok(AsyncMessage::Notification(notification))) => {
                relay_in(signals, node, notification.payload());
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => break Err(db_error(error)),
            None => break Err(StoreError::Unavailable("the connection ended".into())),
        }
    };
    driver.abort();
    outcome
}

/// Publishes one notification here, unless this node sent it.
fn relay_in(signals: &Signals, node: &str, payload: &str) {
    let Some((sender, text)) = payload.split_once(':') else {
        tracing::warn!(payload, "an unreadable signal from another node");
        return;
    };
    if sender == node {
        return;
    }
    if text == MISSED {
        signals.publish_relayed(Received::Missed);
    } else if let Some(signal) = Signal::decode(text) {
        signals.publish_relayed(Received::Signal(signal));
    } else {
        tracing::warn!(payload, "an unreadable signal from another node");
    }
}

/// Resolves once `stopping` turns true (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// A bus of a test node whose relay already listens (it has told the node to re-read).
#[cfg(test)]
pub(crate) async fn relayed_bus(store: &PgStore, stopping: watch::Receiver<bool>) -> Signals {
    let signals = Signals::default();
    let mut listening = signals.subscribe();
    store.relay_signals(signals.clone(), stopping);
    let listens = tokio::time::timeout(Duration::from_secs(30), listening.recv());
    assert_eq!(
        listens.await.expect("the relay listens"),
        Some(Received::Missed)
    );
    signals
}
