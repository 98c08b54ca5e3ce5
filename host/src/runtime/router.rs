//! How a task's output reaches the subtasks of the next node.
//!
//! A [`Router`] serves one edge of the physical plan that leaves a task. Its
//! partitioning is a value ([`Partitioning`]): `Forward` to the subtask with
//! the same index, `Rebalance` batches round-robin, `Broadcast` to all, or
//! `KeyHash`, which extracts each record's key, sets it as the record key and
//! sends the record to the subtask owning its key group (a source whose
//! records all take one key-hash edge reads their keys while it checks them,
//! and the router takes them as they are). Watermarks and the
//! end of input always go to every target. Messages are queued by
//! [`Router::push`] and sent by [`Router::flush`], which hands each target
//! everything queued for it as one channel item (a task often produces many
//! small messages at once — a batch per watermark — and one send and one
//! wake-up for all of them is much cheaper than one each) and waits while a
//! target's channel is full: that wait is the backpressure.

use super::batch::Batch;
use super::keys::KeySelector;
use super::{Message, NodeMetrics};
use crate::error::RuntimeError;
use crate::state::key_groups as keys;
use std::sync::Arc;
use tokio::sync::mpsc::{self, Sender};

/// What travels on a task's channel: messages in order, tagged with the
/// sender's input index.
pub type Envelope = (u32, Vec<Message>);
/// The channel into a task.
pub type TaskSender = Sender<Envelope>;
/// The receiving end of a task's channel.
pub type TaskReceiver = tokio::sync::mpsc::Receiver<Envelope>;

/// The receiving ends of a task's channels, one per logical input of its
/// head node (a join's left and right): a full channel holds back the
/// upstream tasks of its own input only, so the task can read the input
/// that is behind in event time first and let the other one wait upstream
/// instead of in its state.
pub struct TaskInputs {
    /// `None` once the channel has closed.
    rx: Vec<Option<TaskReceiver>>,
    /// The channel a wait polls first, so that inputs take turns.
    next: usize,
}

impl TaskInputs {
    pub fn new(rx: Vec<TaskReceiver>) -> TaskInputs {
        TaskInputs {
            rx: rx.into_iter().map(Some).collect(),
            next: 0,
        }
    }

    /// How many logical inputs there are.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Whether a channel item is waiting on any input.
    pub fn any_ready(&self) -> bool {
        self.rx.iter().flatten().any(|rx| !rx.is_empty())
    }

    /// The next channel item: input `prefer`'s if it has one ready, else the
    /// first to be ready of any input (taking turns); `None` once every
    /// channel has closed.
    pub async fn recv(&mut self, prefer: Option<usize>) -> Option<Envelope> {
        if let Some(p) = prefer
            && let Some(rx) = &mut self.rx[p]
        {
            match rx.try_recv() {
                Ok(e) => return Some(e),
                Err(mpsc::error::TryRecvError::Disconnected) => self.rx[p] = None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        std::future::poll_fn(|cx| self.poll_any(cx)).await
    }

    fn poll_any(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Envelope>> {
        use std::task::Poll;
        let n = self.rx.len();
        let mut open = false;
        for k in 0..n {
            let i = (self.next + k) % n;
            let Some(rx) = &mut self.rx[i] else {
                continue;
            };
            match rx.poll_recv(cx) {
                Poll::Ready(Some(e)) => {
                    self.next = (i + 1) % n;
                    return Poll::Ready(Some(e));
                }
                Poll::Ready(None) => self.rx[i] = None,
                Poll::Pending => open = true,
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    }
}

#[derive(Clone, Debug)]
pub enum Partitioning {
    Forward,
    Rebalance,
    Broadcast,
    KeyHash {
        key: KeySelector,
        max_parallelism: u32,
    },
}

impl Partitioning {
    pub fn name(&self) -> &'static str {
        match self {
            Partitioning::Forward => "forward",
            Partitioning::Rebalance => "rebalance",
            Partitioning::Broadcast => "broadcast",
            Partitioning::KeyHash { .. } => "hash",
        }
    }
}

/// A record whose key could not be extracted, for the dead-letter output.
pub struct Rejected {
    pub batch: Batch,
    pub reasons: Vec<String>,
}

pub struct Router {
    partitioning: Partitioning,
    targets: Vec<TaskSender>,
    /// This task's input index at the targets.
    input_index: u32,
    next: usize,
    /// Messages waiting to be sent, per target.
    queue: Vec<Vec<Message>>,
    key_buf: Vec<u8>,
    rejected: Option<Rejected>,
    /// Where the time spent waiting for a full channel is counted.
    metrics: Option<Arc<NodeMetrics>>,
    /// A key-hash router whose records come with their keys already read
    /// (by their source: see [`Router::take_keys_as_set`]).
    keys_set: bool,
}

impl Router {
    /// `targets` are the downstream subtasks in order (one for `Forward`).
    pub fn new(partitioning: Partitioning, targets: Vec<TaskSender>, input_index: u32) -> Router {
        assert!(!targets.is_empty());
        assert!(!matches!(partitioning, Partitioning::Forward) || targets.len() == 1);
        Router {
            partitioning,
            queue: vec![Vec::new(); targets.len()],
            targets,
            input_index,
            next: 0,
            key_buf: Vec::new(),
            rejected: None,
            metrics: None,
            keys_set: false,
        }
    }

    /// A key-hash router told that each record's key is already the one
    /// its key selector reads (its source read it while checking the
    /// record: [`crate::runtime::source::SourceOutput::with_key`]): the key
    /// is not read again, and with one target the batch goes on as it is.
    pub fn take_keys_as_set(&mut self) {
        debug_assert!(matches!(self.partitioning, Partitioning::KeyHash { .. }));
        self.keys_set = true;
    }

    /// Counts the time this router waits for room downstream as `metrics`'
    /// backpressure.
    pub fn with_metrics(mut self, metrics: Arc<NodeMetrics>) -> Router {
        self.metrics = Some(metrics);
        self
    }

    /// Queues a message for sending.
    pub fn push(&mut self, msg: Message) {
        let batch = match msg {
            Message::Batch(b) => b,
            control => {
                for q in &mut self.queue {
                    q.push(control.clone());
                }
                return;
            }
        };
        match &self.partitioning {
            Partitioning::Forward => self.queue[0].push(Message::Batch(batch)),
            Partitioning::Rebalance => {
                let t = self.next;
                self.next = (self.next + 1) % self.targets.len();
                self.queue[t].push(Message::Batch(batch));
            }
            Partitioning::Broadcast => {
                for q in &mut self.queue {
                    q.push(Message::Batch(batch.clone()));
                }
            }
            Partitioning::KeyHash { .. } if self.keys_set && self.targets.len() == 1 => {
                debug_assert!(batch.iter().all(|r| r.key().is_some()));
                self.queue[0].push(Message::Batch(batch));
            }
            Partitioning::KeyHash {
                key,
                max_parallelism,
            } => {
                let n = self.targets.len();
                let per_target = batch.data.len() / n + 64;
                let mut parts: Vec<Batch> = (0..n)
                    .map(|_| Batch::with_capacity(batch.len() / n + 8, per_target))
                    .collect();
                // The members a source found go with each record.
                let members = batch.members.as_ref().filter(|m| m.fit(&batch));
                for (i, record) in batch.iter().enumerate() {
                    if self.keys_set
                        && let Some(k) = record.key()
                    {
                        let kg = keys::key_group(k, *max_parallelism);
                        let t = keys::subtask_for_key_group(kg, *max_parallelism, n as u32);
                        let part = &mut parts[t as usize];
                        part.push_record(record, None);
                        if let Some(m) = members {
                            m.copy_record(i, &mut part.members);
                        }
                        continue;
                    }
                    match key.extract(record.value(), &mut self.key_buf) {
                        Ok(()) => {
                            let kg = keys::key_group(&self.key_buf, *max_parallelism);
                            let t = keys::subtask_for_key_group(kg, *max_parallelism, n as u32)
                                as usize;
                            parts[t].push_record(record, Some(&self.key_buf));
                            if let Some(m) = members {
                                m.copy_record(i, &mut parts[t].members);
                            }
                        }
                        Err(reason) => {
                            let r = self.rejected.get_or_insert_with(|| Rejected {
                                batch: Batch::default(),
                                reasons: Vec::new(),
                            });
                            r.batch.push_record(record, None);
                            r.reasons
                                .push(format!("key_by {}: {reason}", key.describe()));
                        }
                    }
                }
                for (q, part) in self.queue.iter_mut().zip(parts) {
                    if !part.is_empty() {
                        q.push(Message::Batch(part));
                    }
                }
            }
        }
    }

    /// Records whose key could not be extracted since the last call.
    pub fn take_rejected(&mut self) -> Option<Rejected> {
        self.rejected.take()
    }

    /// Sends everything queued, waiting for room in full channels.
    pub async fn flush(&mut self) -> Result<(), RuntimeError> {
        for (target, queue) in self.targets.iter().zip(&mut self.queue) {
            if queue.is_empty() {
                continue;
            }
            let messages = std::mem::take(queue);
            let stopped = || RuntimeError::Disconnected("a downstream task stopped".into());
            // Try first: only a full channel costs a clock read.
            let item = match target.try_send((self.input_index, messages)) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
                Err(mpsc::error::TrySendError::Full(item)) => item,
            };
            let waited = std::time::Instant::now();
            target.send(item).await.map_err(|_| stopped())?;
            if let Some(m) = &self.metrics {
                NodeMetrics::add(&m.backpressured_nanos, waited.elapsed().as_nanos() as u64);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Pointer;
    use crate::runtime::Origin;
    use crate::time::watermark::Watermark;

    fn batch(values: &[&str]) -> Batch {
        let mut b = Batch::default();
        for v in values {
            b.push(None, v.as_bytes(), None, Origin::NONE);
        }
        b
    }

    /// Where each record of `b` goes (target, its key) through a key-hash
    /// router to `n` targets.
    async fn routed(b: Batch, n: usize, keys_set: bool) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(16)).unzip();
        let key = KeySelector::new(vec![Pointer::parse("/k").unwrap()]);
        let partitioning = Partitioning::KeyHash {
            key,
            max_parallelism: 128,
        };
        let mut r = Router::new(partitioning, txs, 0);
        if keys_set {
            r.take_keys_as_set();
        }
        r.push(Message::Batch(b));
        r.flush().await.unwrap();
        assert!(r.take_rejected().is_none());
        let mut out = Vec::new();
        for (t, rx) in rxs.iter_mut().enumerate() {
            while let Ok((_, msgs)) = rx.try_recv() {
                for m in msgs {
                    let Message::Batch(b) = m else { continue };
                    out.extend(
                        b.iter()
                            .map(|r| (t, r.key().unwrap().to_vec(), r.value().to_vec())),
                    );
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn keys_set_upstream_are_routed_as_they_are_and_not_read_again() {
        let values: Vec<String> = (0..40).map(|i| format!("{{\"k\":{}}}", i % 7)).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        // The keys a source sets are those the router reads: the same
        // routes either way.
        let mut keyed = Batch::default();
        for v in &refs {
            let k = v.trim_start_matches("{\"k\":").trim_end_matches('}');
            keyed.push(Some(k.as_bytes()), v.as_bytes(), None, Origin::NONE);
        }
        for n in [1, 2, 3] {
            assert_eq!(
                routed(keyed.clone(), n, true).await,
                routed(batch(&refs), n, false).await,
                "{n} targets"
            );
        }
        // Taken as set: a value is not read for its key (here it has none).
        let mut b = Batch::default();
        b.push(Some(b"7"), b"{}", None, Origin::NONE);
        b.push(Some(b"8"), b"{}", None, Origin::NONE);
        assert_eq!(routed(b.clone(), 1, true).await.len(), 2);
        assert_eq!(routed(b, 2, true).await.len(), 2);
    }

    #[tokio::test]
    async fn key_hash_sends_each_key_to_one_subtask_and_rejects_keyless_records() {
        let (tx0, mut rx0) = mpsc::channel(16);
        let (tx1, mut rx1) = mpsc::channel(16);
        let key = KeySelector::new(vec![Pointer::parse("/k").unwrap()]);
        let mut r = Router::new(
            Partitioning::KeyHash {
                key,
                max_parallelism: 128,
            },
            vec![tx0, tx1],
            3,
        );
        let values: Vec<String> = (0..50).map(|i| format!("{{\"k\":{}}}", i % 10)).collect();
        let mut refs: Vec<&str> = values.iter().map(String::as_str).collect();
        refs.push("{\"nokey\":1}");
        r.push(Message::Batch(batch(&refs)));
        r.push(Message::Watermark(Watermark::Time(7)));
        r.flush().await.unwrap();
        let rejected = r.take_rejected().unwrap();
        assert_eq!(rejected.batch.len(), 1);
        assert!(rejected.reasons[0].contains("no key field at /k"));

        let mut seen = std::collections::HashMap::new();
        let mut total = 0;
        for (target, rx) in [(0, &mut rx0), (1, &mut rx1)] {
            let mut got_wm = false;
            let mut received = Vec::new();
            while let Ok((idx, msgs)) = rx.try_recv() {
                assert_eq!(idx, 3);
                received.extend(msgs);
            }
            for msg in received {
                match msg {
                    Message::Batch(b) => {
                        for rec in b.iter() {
                            let k = rec.key().unwrap().to_vec();
                            assert_eq!(*seen.entry(k).or_insert(target), target);
                            total += 1;
                        }
                        assert!(!got_wm, "watermark must follow the data");
                    }
                    Message::Watermark(w) => {
                        assert_eq!(w, Watermark::Time(7));
                        got_wm = true;
                    }
                    Message::EndOfInput | Message::LatencyMarker(_) | Message::Barrier(_) => {
                        unreachable!()
                    }
                }
            }
            assert!(got_wm);
        }
        assert_eq!(total, 50);
    }

    #[tokio::test]
    async fn a_full_channel_makes_the_sender_wait() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut r = Router::new(Partitioning::Forward, vec![tx], 0);
        r.push(Message::Batch(batch(&["{\"n\":1}"])));
        r.flush().await.unwrap();
        r.push(Message::Batch(batch(&["{\"n\":2}"])));
        let sender = tokio::spawn(async move {
            r.flush().await.unwrap();
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !sender.is_finished(),
            "the channel is full: the sender must wait"
        );
        let (_, first) = rx.recv().await.unwrap();
        assert!(matches!(&first[..], [Message::Batch(b)] if b.get(0).value() == b"{\"n\":1}"));
        sender.await.unwrap();
        let (_, second) = rx.recv().await.unwrap();
        assert!(matches!(&second[..], [Message::Batch(b)] if b.get(0).value() == b"{\"n\":2}"));
    }

    #[tokio::test]
    async fn rebalance_alternates_batches() {
        let (tx0, mut rx0) = mpsc::channel(16);
        let (tx1, mut rx1) = mpsc::channel(16);
        let mut r = Router::new(Partitioning::Rebalance, vec![tx0, tx1], 0);
        for _ in 0..4 {
            r.push(Message::Batch(batch(&["{}"])));
        }
        r.push(Message::EndOfInput);
        r.flush().await.unwrap();
        let count = |rx: &mut TaskReceiver| {
            let mut n = 0;
            while let Ok((_, msgs)) = rx.try_recv() {
                n += msgs
                    .iter()
                    .filter(|m| matches!(m, Message::Batch(_)))
                    .count();
            }
            n
        };
        assert_eq!((count(&mut rx0), count(&mut rx1)), (2, 2));
    }
}
