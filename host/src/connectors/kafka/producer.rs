//! What the Kafka sink and its transactions share: the sink's options and
//! a producer that keeps the first delivery failure and sends with
//! backpressure.

use rdkafka::ClientContext;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkOptions {
    pub bootstrap: String,
    pub topic: String,
    /// A JSON pointer into the value for the record key; without it the
    /// record's own key (from `key_by`) is used, if it has one.
    #[serde(default)]
    pub key: Option<String>,
    /// The key as a JSON object of these top-level fields of the value,
    /// `{"a": …, "b": …}` (Flink's `'key.format' = 'json'`); a missing field
    /// is `null`. Exclusive with `key`.
    #[serde(default)]
    pub key_fields: Vec<String>,
    /// `exactly-once` (the default with checkpointing) or `at-least-once`.
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// The start of the exactly-once sink's transactional ids (default
    /// `sluice-JOB-UID`): unique per job writing to the cluster.
    #[serde(default)]
    pub transactional_id_prefix: Option<String>,
    /// A JSON pointer to the part of each record to send as the value (a
    /// JSON string is sent as its text); without it, the whole record.
    #[serde(default)]
    pub value: Option<String>,
    /// Headers set from each record: header name → JSON pointer (a JSON
    /// string is sent as its text, other values as JSON; a missing or null
    /// field sets no header). The record's own headers are sent too,
    /// except those these names replace.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Upsert semantics, for compacted topics: every record needs a key,
    /// and a value that is JSON `null` is sent as a tombstone (a delete).
    #[serde(default)]
    pub upsert: bool,
    /// librdkafka producer settings passed as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    ExactlyOnce,
    AtLeastOnce,
}

/// Keeps the first delivery failure for the task to report.
pub(crate) struct Deliveries {
    pub failed: Arc<Mutex<Option<String>>>,
    /// The broker answers with offsets (`acks` is not 0).
    offsets: bool,
}

impl Deliveries {
    pub fn new(failed: Arc<Mutex<Option<String>>>, properties: &BTreeMap<String, String>) -> Self {
        let acks = ["acks", "request.required.acks"]
            .iter()
            .find_map(|k| properties.get(*k));
        Deliveries {
            failed,
            offsets: acks.is_none_or(|a| a.trim() != "0"),
        }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        let failure = match result {
            Err((e, m)) => format!(
                "the broker refused a record for {}/{}: {e}",
                m.topic(),
                m.partition()
            ),
            // librdkafka reports a record as delivered when the broker
            // answers a retried request with "duplicate sequence number",
            // without an offset. A broker that answers so for a request it
            // never stored (Tansu 0.6 after a crash between its writes)
            // has lost the record: fail, so that the job goes back to its
            // last checkpoint and writes it again.
            Ok(m) if self.offsets && m.offset() < 0 => format!(
                "the broker acknowledged a record for {}/{} without an offset (a retried request it took for a duplicate): it may not have stored it",
                m.topic(),
                m.partition()
            ),
            Ok(_) => return,
        };
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert(failure);
    }
}

pub(super) fn take_failure(failed: &Mutex<Option<String>>) -> Option<String> {
    failed.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// One record as the sink sends it (and, exactly once, logs it).
pub(crate) struct Outgoing<'a> {
    pub key: Option<&'a [u8]>,
    /// None: a tombstone.
    pub value: Option<&'a [u8]>,
    /// Epoch milliseconds (none: the producer's clock).
    pub timestamp: Option<i64>,
    pub headers: Option<OwnedHeaders>,
}

/// Hands one record to librdkafka: `false` while its queue is full.
pub(super) fn try_send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    record: &mut Outgoing<'_>,
) -> Result<bool, String> {
    let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
    r.payload = record.value;
    r.key = record.key;
    r.timestamp = record.timestamp;
    r.headers = record.headers.take();
    match producer.send(r) {
        Ok(()) => Ok(true),
        Err((
            rdkafka::error::KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::QueueFull,
            ),
            r,
        )) => {
            record.headers = r.headers;
            Ok(false)
        }
        Err((e, _)) => Err(e.to_string()),
    }
}

/// Sends one record, waiting (in this thread) while librdkafka's queue is
/// full.
pub(crate) fn send_blocking(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    mut record: Outgoing<'_>,
) -> Result<(), String> {
    while !try_send(producer, topic, &mut record)? {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Sends one record, waiting (asynchronously) while librdkafka's queue is
/// full.
pub(super) async fn send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    mut record: Outgoing<'_>,
) -> Result<(), String> {
    while !try_send(producer, topic, &mut record)? {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// A JSON string as its text (unescaped into `buf`), any other JSON value
/// as it is.
pub(super) fn text_of<'a>(raw: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        buf.clear();
        crate::json::unescape_into(&raw[1..raw.len() - 1], buf);
        buf
    } else {
        raw
    }
}

/// The start of a record's value, for error messages.
pub(super) fn excerpt(value: &[u8]) -> String {
    let s = String::from_utf8_lossy(&value[..value.len().min(200)]);
    if value.len() > 200 {
        format!("{s}…")
    } else {
        s.into_owned()
    }
}

/// Waits until everything `producer` sent is acknowledged.
pub(super) async fn flush(
    producer: &ThreadedProducer<Deliveries>,
    failed: &Mutex<Option<String>>,
) -> Result<(), String> {
    loop {
        match producer.flush(Duration::from_millis(100)) {
            Ok(()) => break,
            Err(rdkafka::error::KafkaError::Flush(_)) => {
                if let Some(m) = take_failure(failed) {
                    return Err(m);
                }
                tokio::task::yield_now().await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    take_failure(failed).map_or(Ok(()), Err)
}
