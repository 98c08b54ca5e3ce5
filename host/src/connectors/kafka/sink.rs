//! The Kafka sink. At least once: records are sent as they come; a
//! checkpoint barrier and the end of input wait until the broker has
//! acknowledged every record sent before them, and a record the broker
//! refused fails the job (with its topic and the broker's reason). Exactly
//! once: the same, inside Kafka transactions committed when the checkpoint
//! that covers them completes (see [`super::txn`]).

use super::client_config;
use super::producer::{
    Deliveries, Delivery, KafkaSinkOptions, Outgoing, excerpt, flush, send, take_failure, text_of,
};
use super::txn::{Epoch, Item, Transactions};
use crate::checkpoint::{Barrier, Committer, OperatorState};
use crate::connectors::SinkContext;
use crate::error::RuntimeError;
use crate::json::Pointer;
use crate::runtime::keys::KeySelector;
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Subtask};
use async_trait::async_trait;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::ThreadedProducer;
use serde_json::Value;
use std::sync::{Arc, Mutex};

pub struct KafkaSinkFactory {
    options: Arc<KafkaSinkOptions>,
    key: Option<KeySelector>,
    fields: Arc<Fields>,
    /// With exactly-once delivery.
    transactions: Option<Arc<Transactions>>,
    context: String,
}

impl KafkaSinkFactory {
    pub fn new(options: KafkaSinkOptions, job: SinkContext) -> Result<KafkaSinkFactory, String> {
        let key = options
            .key
            .as_deref()
            .map(|k| Pointer::parse(k).map(|p| KeySelector::new(vec![p])))
            .transpose()?;
        if options.topic.is_empty() {
            return Err("a kafka sink needs a `topic`".into());
        }
        if key.is_some() && !options.key_fields.is_empty() {
            return Err("`key` and `key_fields` are exclusive".into());
        }
        let fields = Arc::new(Fields {
            key_object: options
                .key_fields
                .iter()
                .map(|f| {
                    Pointer::parse(&format!("/{}", f.replace('~', "~0").replace('/', "~1")))
                        .map(|p| (f.clone(), p))
                        .map_err(|e| format!("`key_fields`: {e}"))
                })
                .collect::<Result<_, _>>()?,
            value: options
                .value
                .as_deref()
                .map(|p| Pointer::parse(p).map_err(|e| format!("`value`: {e}")))
                .transpose()?,
            headers: options
                .headers
                .iter()
                .map(|(name, p)| {
                    Pointer::parse(p)
                        .map(|p| (name.clone(), p))
                        .map_err(|e| format!("`headers.{name}`: {e}"))
                })
                .collect::<Result<_, _>>()?,
        });
        let context = format!(
            "kafka sink to topic `{}` on {}",
            options.topic, options.bootstrap
        );
        let delivery = options.delivery.unwrap_or(if job.exactly_once {
            Delivery::ExactlyOnce
        } else {
            Delivery::AtLeastOnce
        });
        if options.properties.contains_key("transactional.id") {
            return Err("set `transactional_id_prefix`, not the property `transactional.id`: each subtask needs ids of its own".into());
        }
        let prefix = options
            .transactional_id_prefix
            .clone()
            .unwrap_or_else(|| format!("sluice-{}-{}", job.job, job.uid));
        let options = Arc::new(options);
        let transactions = match (delivery, &job.checkpoints) {
            (Delivery::AtLeastOnce, _) => None,
            (Delivery::ExactlyOnce, None) => {
                return Err("`delivery: exactly-once` needs checkpointing (a `checkpoints: {dir}` section or --checkpoint-dir): transactions commit with checkpoints".into());
            }
            (Delivery::ExactlyOnce, Some(c)) => Some(Arc::new(Transactions::new(
                options.clone(),
                prefix,
                c.dir.join(format!("kafka-sink-{}", job.uid)),
                c,
                context.clone(),
            ))),
        };
        Ok(KafkaSinkFactory {
            options,
            key,
            fields,
            transactions,
            context,
        })
    }
}

#[async_trait]
impl OperatorFactory for KafkaSinkFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    /// An upsert sink applies a changelog as Flink's upsert-kafka does: a
    /// delete is a tombstone, an update-before is not written (the
    /// update-after of its key replaces it).
    fn changelog(&self) -> crate::runtime::operator::ChangelogInput {
        if self.options.upsert {
            crate::runtime::operator::ChangelogInput::Applied
        } else {
            crate::runtime::operator::ChangelogInput::Refused
        }
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        let subtask = subtask.index;
        Box::new(KafkaSink {
            options: self.options.clone(),
            key: self.key.clone(),
            fields: self.fields.clone(),
            mode: match &self.transactions {
                None => Mode::AtLeastOnce {
                    producer: None,
                    failed: Arc::new(Mutex::new(None)),
                },
                Some(t) => Mode::ExactlyOnce {
                    transactions: t.clone(),
                    subtask,
                    epoch: None,
                    pending: Vec::new(),
                    last_barrier: 0,
                },
            },
            context: self.context.clone(),
            raw: Vec::new(),
            key_buf: Vec::new(),
            value_buf: Vec::new(),
            header_buf: Vec::new(),
        })
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        self.transactions
            .clone()
            .map(|t| Arc::new(TxnCommitter(t)) as Arc<dyn Committer>)
    }
}

struct TxnCommitter(Arc<Transactions>);

impl Committer for TxnCommitter {
    fn commit(&self, _id: u64, items: &[Value]) -> Result<(), String> {
        self.0.commit(items)
    }

    fn recover(&self, _restored: Option<u64>, items: &[Value]) -> Result<(), String> {
        self.0.recover(items)
    }
}

/// A record's headers as sent: its own, then those the options set from
/// its value (which replace its own of the same name).
fn outgoing_headers(
    r: crate::runtime::batch::RecordRef<'_>,
    fields: &Fields,
    buf: &mut Vec<u8>,
    doc: &[u8],
) -> Result<Option<OwnedHeaders>, String> {
    let own = r
        .headers()
        .filter(|(name, _)| !fields.headers.iter().any(|(n, _)| n.as_bytes() == *name));
    let mut headers: Option<OwnedHeaders> = None;
    for (name, value) in own {
        let name = String::from_utf8_lossy(name);
        headers = Some(headers.unwrap_or_default().insert(Header {
            key: &name,
            value: Some(value),
        }));
    }
    for (name, p) in &fields.headers {
        let raw = match crate::json::find(doc, p) {
            Ok(Some(v)) if v != b"null" => v,
            Ok(_) => continue,
            Err(e) => return Err(format!("{e} in {}", excerpt(doc))),
        };
        headers = Some(headers.unwrap_or_default().insert(Header {
            key: name,
            value: Some(text_of(raw, buf)),
        }));
    }
    Ok(headers)
}

enum Mode {
    AtLeastOnce {
        producer: Option<ThreadedProducer<Deliveries>>,
        failed: Arc<Mutex<Option<String>>>,
    },
    ExactlyOnce {
        transactions: Arc<Transactions>,
        subtask: u32,
        /// The transaction of the records since the last barrier.
        epoch: Option<Epoch>,
        /// Transactions prepared and not yet known to be committed, by
        /// checkpoint id.
        pending: Vec<(u64, Item)>,
        last_barrier: u64,
    },
}

/// The parts of a record the sink's options point at.
struct Fields {
    /// The fields of a JSON object key, with their names.
    key_object: Vec<(String, Pointer)>,
    value: Option<Pointer>,
    headers: Vec<(String, Pointer)>,
}

struct KafkaSink {
    options: Arc<KafkaSinkOptions>,
    key: Option<KeySelector>,
    fields: Arc<Fields>,
    mode: Mode,
    /// What errors name: the topic and the broker.
    context: String,
    /// The current record's key as found, and as sent.
    raw: Vec<u8>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    header_buf: Vec<u8>,
}

/// The key object of `doc`: `{"name": value, …}` of `fields`, a missing
/// field `null`, into `out`.
fn json_key(
    doc: &[u8],
    fields: &[(String, Pointer)],
    out: &mut Vec<u8>,
) -> Result<(), crate::json::JsonError> {
    let pointers: smallvec::SmallVec<[&Pointer; 4]> = fields.iter().map(|(_, p)| p).collect();
    let mut found: smallvec::SmallVec<[Option<&[u8]>; 4]> =
        smallvec::smallvec![None; pointers.len()];
    crate::json::find_many(doc, &pointers, &mut found)?;
    out.clear();
    out.push(b'{');
    for (i, ((name, _), v)) in fields.iter().zip(&found).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        crate::json::write_str(out, name.as_bytes());
        out.push(b':');
        out.extend_from_slice(v.unwrap_or(b"null"));
    }
    out.push(b'}');
    Ok(())
}

fn sink_error(context: &str, message: String) -> RuntimeError {
    RuntimeError::Io {
        context: context.to_owned(),
        source: std::io::Error::other(message),
    }
}

impl KafkaSink {
    fn error(&self, message: String) -> RuntimeError {
        sink_error(&self.context, message)
    }

    /// Ends the current epoch at checkpoint `id` (exactly once) or waits
    /// for every acknowledgement (at least once).
    async fn seal(&mut self, id: u64) -> Result<(), RuntimeError> {
        let r = match &mut self.mode {
            Mode::AtLeastOnce { producer, failed } => match producer {
                Some(p) => flush(p, failed).await,
                None => Ok(()),
            },
            Mode::ExactlyOnce {
                transactions,
                epoch,
                pending,
                ..
            } => match epoch.take() {
                None => Ok(()),
                Some(e) => match flush(&e.txn.producer, &e.txn.failed).await {
                    Ok(()) => transactions
                        .prepare(e, id)
                        .map(|item| pending.push((id, item))),
                    Err(m) => Err(m),
                },
            },
        };
        r.map_err(|m| self.error(m))
    }
}

#[async_trait]
impl Operator for KafkaSink {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        if let Mode::AtLeastOnce { producer, failed } = &mut self.mode {
            let defaults = [("enable.idempotence", "true"), ("linger.ms", "5")];
            let config =
                client_config(&self.options.bootstrap, &defaults, &self.options.properties);
            let p = ThreadedProducer::from_config_and_context(
                &config,
                Deliveries::new(failed.clone(), &self.options.properties),
            )
            .map_err(|e| sink_error(&self.context, format!("cannot create a producer: {e}")))?;
            *producer = Some(p);
        }
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        let KafkaSink {
            options,
            key,
            fields,
            mode,
            context,
            raw,
            key_buf,
            value_buf,
            header_buf,
        } = self;
        let err = |m: String| sink_error(context, m);
        // A refused record fails the job at the next batch (or barrier).
        let failed = match mode {
            Mode::AtLeastOnce { failed, .. } => Some(&**failed),
            Mode::ExactlyOnce { epoch, .. } => epoch.as_ref().map(|e| &*e.txn.failed),
        };
        if let Some(m) = failed.and_then(take_failure) {
            return Err(err(m));
        }
        for r in batch.iter() {
            let change = r.kind();
            if change == crate::runtime::batch::RowKind::UpdateBefore {
                // Only an upsert sink takes a changelog (the plan checks).
                continue;
            }
            let doc = r.value();
            if !fields.key_object.is_empty() {
                json_key(doc, &fields.key_object, raw)
                    .map_err(|e| err(format!("{e} in {}", excerpt(doc))))?;
            }
            let found = !fields.key_object.is_empty()
                || match key {
                    // A key field that is missing or null sends no key.
                    Some(k) => k.extract(doc, raw).is_ok() && raw.as_slice() != b"null",
                    None => r
                        .key()
                        .map(|k| {
                            raw.clear();
                            raw.extend_from_slice(k);
                        })
                        .is_some(),
                };
            // A JSON string key is sent as its text, other keys (an
            // object key among them) as their JSON.
            let key: Option<&[u8]> = found.then(|| text_of(raw, key_buf));
            let value = match &fields.value {
                None => doc,
                Some(p) => match crate::json::find(doc, p) {
                    Ok(Some(v)) => v,
                    Ok(None) => {
                        return Err(err(format!("no value at {p} in {}", excerpt(doc))));
                    }
                    Err(e) => return Err(err(format!("{e} in {}", excerpt(doc)))),
                },
            };
            let value = if options.upsert {
                if key.is_none() {
                    return Err(err(format!(
                        "an upsert sink needs a key for every record (`key: /pointer`, or a keyed input), and this one has none: {}",
                        excerpt(doc)
                    )));
                }
                (change != crate::runtime::batch::RowKind::Delete && value.trim_ascii() != b"null")
                    .then_some(value)
            } else {
                Some(value)
            };
            let value = match (value, &fields.value) {
                (Some(v), Some(_)) => Some(text_of(v, value_buf)),
                (v, _) => v,
            };
            let headers = outgoing_headers(r, fields, header_buf, doc).map_err(err)?;
            let record = Outgoing {
                key,
                value,
                timestamp: r.timestamp(),
                headers,
            };
            match mode {
                Mode::AtLeastOnce { producer, .. } => {
                    let p = producer.as_ref().expect("opened");
                    send(p, &options.topic, record).await.map_err(err)?;
                }
                Mode::ExactlyOnce {
                    transactions,
                    subtask,
                    epoch,
                    ..
                } => {
                    if epoch.is_none() {
                        *epoch = Some(transactions.begin(*subtask).map_err(err)?);
                    }
                    let e = epoch.as_mut().expect("begun");
                    transactions.log(e, &record).map_err(err)?;
                    send(&e.txn.producer, &options.topic, record)
                        .await
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }

    async fn close(&mut self, _out: &mut Output) -> Result<(), RuntimeError> {
        // The job's last output: committed when the whole job has ended.
        let id = match &self.mode {
            Mode::ExactlyOnce { last_barrier, .. } => last_barrier + 1,
            Mode::AtLeastOnce { .. } => 0,
        };
        self.seal(id).await
    }

    async fn snapshot(
        &mut self,
        barrier: Barrier,
        _out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        if let Mode::ExactlyOnce { last_barrier, .. } = &mut self.mode {
            *last_barrier = barrier.id;
        }
        self.seal(barrier.id).await?;
        let committables = match &self.mode {
            Mode::ExactlyOnce { pending, .. } => pending.iter().map(|(_, i)| i.to_json()).collect(),
            Mode::AtLeastOnce { .. } => Vec::new(),
        };
        Ok(OperatorState {
            committables,
            ..Default::default()
        })
    }

    fn notify_checkpoint_complete(&mut self, id: u64) {
        if let Mode::ExactlyOnce {
            pending,
            last_barrier,
            ..
        } = &mut self.mode
        {
            // Also told at the start of a restored job: checkpoint ids go
            // on from there.
            *last_barrier = (*last_barrier).max(id);
            pending.retain(|(i, _)| *i > id);
        }
    }

    fn take_final_committables(&mut self) -> Vec<Value> {
        match &mut self.mode {
            Mode::ExactlyOnce { pending, .. } => std::mem::take(pending)
                .into_iter()
                .map(|(_, i)| i.to_json())
                .collect(),
            Mode::AtLeastOnce { .. } => Vec::new(),
        }
    }
}
