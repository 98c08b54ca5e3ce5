//! The Kafka sink, at least once: records are sent as they come; a
//! checkpoint barrier and the end of input wait until the broker has
//! acknowledged every record sent before them, and a record the broker
//! refused fails the job (with its topic and the broker's reason).

use super::client_config;
use crate::connectors::SinkFactory;
use crate::error::RuntimeError;
use crate::json::Pointer;
use crate::runtime::keys::KeySelector;
use crate::runtime::{Batch, Operator, Output};
use async_trait::async_trait;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, config::FromClientConfigAndContext};
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
    /// librdkafka producer settings passed as they are.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

pub struct KafkaSinkFactory {
    options: KafkaSinkOptions,
    key: Option<KeySelector>,
}

impl KafkaSinkFactory {
    pub fn new(options: KafkaSinkOptions) -> Result<KafkaSinkFactory, String> {
        let key = options
            .key
            .as_deref()
            .map(|k| Pointer::parse(k).map(|p| KeySelector::new(vec![p])))
            .transpose()?;
        if options.topic.is_empty() {
            return Err("a kafka sink needs a `topic`".into());
        }
        Ok(KafkaSinkFactory { options, key })
    }
}

impl SinkFactory for KafkaSinkFactory {
    fn create(&self, _subtask: u32, _parallelism: u32) -> Box<dyn Operator> {
        Box::new(KafkaSink {
            bootstrap: self.options.bootstrap.clone(),
            topic: self.options.topic.clone(),
            key: self.key.clone(),
            properties: self.options.properties.clone(),
            producer: None,
            failed: Arc::new(Mutex::new(None)),
            context: format!(
                "kafka sink to topic `{}` on {}",
                self.options.topic, self.options.bootstrap
            ),
            raw: Vec::new(),
            key_buf: Vec::new(),
        })
    }
}

/// Keeps the first delivery failure for the task to report.
struct Deliveries {
    failed: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            use rdkafka::message::Message;
            let mut failed = self.failed.lock().expect("delivery lock");
            failed.get_or_insert_with(|| {
                format!(
                    "the broker refused a record for {}/{}: {e}",
                    m.topic(),
                    m.partition()
                )
            });
        }
    }
}

struct KafkaSink {
    bootstrap: String,
    topic: String,
    key: Option<KeySelector>,
    properties: BTreeMap<String, String>,
    producer: Option<ThreadedProducer<Deliveries>>,
    failed: Arc<Mutex<Option<String>>>,
    /// What errors name: the topic and the broker.
    context: String,
    /// The current record's key as found, and as sent.
    raw: Vec<u8>,
    key_buf: Vec<u8>,
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

    fn check(&self) -> Result<(), RuntimeError> {
        match self.failed.lock().expect("delivery lock").take() {
            Some(m) => Err(self.error(m)),
            None => Ok(()),
        }
    }

    /// Waits until everything sent so far is acknowledged.
    async fn flush(&mut self) -> Result<(), RuntimeError> {
        let producer = self.producer.as_ref().expect("opened");
        loop {
            match producer.flush(Duration::from_millis(100)) {
                Ok(()) => break,
                Err(rdkafka::error::KafkaError::Flush(_)) => {
                    self.check()?;
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(self.error(e.to_string())),
            }
        }
        self.check()
    }
}

#[async_trait]
impl Operator for KafkaSink {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        let defaults = [("enable.idempotence", "true"), ("linger.ms", "5")];
        let config = client_config(&self.bootstrap, &defaults, &self.properties);
        let producer = ThreadedProducer::from_config_and_context(
            &config,
            Deliveries {
                failed: self.failed.clone(),
            },
        )
        .map_err(|e| self.error(format!("cannot create a producer: {e}")))?;
        self.producer = Some(producer);
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, _out: &mut Output) -> Result<(), RuntimeError> {
        self.check()?;
        let KafkaSink {
            topic,
            key,
            producer,
            context,
            raw,
            key_buf,
            ..
        } = self;
        let producer = producer.as_ref().expect("opened");
        for r in batch.iter() {
            let found = match key {
                Some(k) => k.extract(r.value(), raw).is_ok(),
                None => r
                    .key()
                    .map(|k| {
                        raw.clear();
                        raw.extend_from_slice(k);
                    })
                    .is_some(),
            };
            // A JSON string key is sent as its text, other keys as their
            // JSON.
            let key: Option<&[u8]> = if !found {
                None
            } else if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
                key_buf.clear();
                crate::json::unescape_into(&raw[1..raw.len() - 1], key_buf);
                Some(key_buf)
            } else {
                Some(raw)
            };
            let mut record = BaseRecord::to(topic).payload(r.value());
            if let Some(k) = key {
                record = record.key(k);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err(sink_error(context, e.to_string())),
                }
            }
        }
        Ok(())
    }

    async fn close(&mut self, _out: &mut Output) -> Result<(), RuntimeError> {
        self.flush().await
    }

    async fn snapshot(
        &mut self,
        _barrier: crate::checkpoint::Barrier,
        _out: &mut Output,
    ) -> Result<crate::checkpoint::OperatorState, RuntimeError> {
        self.flush().await?;
        Ok(crate::checkpoint::OperatorState {
            meta: serde_json::Value::Null,
            keyed: None,
            committables: Vec::new(),
        })
    }
}
