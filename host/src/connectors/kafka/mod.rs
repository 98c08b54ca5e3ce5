//! Kafka: a partitioned source and a sink, over librdkafka (the copy bundled
//! with the `rdkafka` crate, so that it speaks to any broker version).
//!
//! Source: every partition of the topics (named, or matching
//! `topic_pattern`) is a split, read by subtask
//! `(hash(topic) + partition) % parallelism` (as Flink assigns them), with
//! its own watermark. Unbounded sources look for new partitions and topics
//! every `discovery_interval` and read them from their earliest offset.
//! Positions (the next offset per partition) go into
//! checkpoints and come back on restore. `bounded: true` reads
//! up to the end offsets seen when the job starts and then ends the input
//! (Flink's `setBounded(latest)`).
//!
//! Sink: records go to one topic, keyed by the record's key (the `key_by`
//! of the pipeline, or `key: /pointer` into the value), partitioned by
//! librdkafka's key hash. At a checkpoint barrier the sink waits until the
//! broker has acknowledged everything sent before it: at least once.

mod producer;
pub mod sink;
mod txn;

use crate::connectors::FormatOption;
use crate::error::RuntimeError;
use crate::runtime::source::SourceFactory;
use crate::runtime::source::{Format, Positions, Source, SourceOutput, SourcePoll, SplitId};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a metadata or offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceOptions {
    /// `host:port[,host:port…]`.
    pub bootstrap: String,
    /// The topics to read (or `topic` for one).
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub topic: Option<String>,
    /// A regular expression: every topic whose whole name matches it.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// How often an unbounded source looks for new partitions (and, with
    /// a pattern, topics); `0s` never (default 30 s; bounded: never).
    #[serde(default)]
    pub discovery_interval: Option<crate::units::Dur>,
    /// Where partitions without a checkpointed position start.
    #[serde(default)]
    pub start: StartOption,
    /// With `start: timestamp`: epoch milliseconds.
    #[serde(default)]
    pub start_timestamp: Option<i64>,
    /// Stop at the end offsets seen at job start.
    #[serde(default)]
    pub bounded: bool,
    /// The consumer group: with `start: group` partitions start at its
    /// committed offsets, and the positions of each completed checkpoint
    /// are committed to it (for monitoring: recovery reads positions from
    /// checkpoints, never from the group).
    #[serde(default)]
    pub group_id: Option<String>,
    /// With `start: group`: where a partition the group has no offset for
    /// starts (`earliest`, `latest`, or `fail`).
    #[serde(default)]
    pub group_fallback: GroupFallback,
    #[serde(default)]
    pub format: FormatOption,
    /// librdkafka settings passed as they are (`fetch.max.bytes`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartOption {
    #[default]
    Earliest,
    Latest,
    Timestamp,
    /// The group's committed offsets.
    Group,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupFallback {
    #[default]
    Earliest,
    Latest,
    Fail,
}

/// One partition to read.
#[derive(Debug, Clone)]
struct Partition {
    topic: String,
    partition: i32,
    /// With `bounded`: the end offset seen at job start.
    end: Option<i64>,
}

impl Partition {
    fn name(&self) -> String {
        split_name(&self.topic, self.partition)
    }
}

fn split_name(topic: &str, partition: i32) -> String {
    format!("kafka topic {topic} partition {partition}")
}

pub struct KafkaSourceFactory {
    options: Arc<KafkaSourceOptions>,
    partitions: Vec<Partition>,
    /// The pattern of `topic_pattern`, anchored.
    pattern: Option<regex::Regex>,
}

/// Which subtask of `parallelism` reads a partition: stable across runs and
/// as partitions are added (FNV-1a of the topic name, then round robin).
fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let h = topic.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let p = u64::from(parallelism.max(1));
    ((h % p + partition.max(0) as u64) % p) as u32
}

/// The partitions of `topics`, or of the topics `pattern` matches, sorted.
fn list_partitions(
    consumer: &BaseConsumer,
    bootstrap: &str,
    topics: &[String],
    pattern: Option<&regex::Regex>,
) -> Result<Vec<(String, i32)>, String> {
    let mut found = Vec::new();
    let mut read = |topic: Option<&str>| -> Result<(), String> {
        let md = consumer
            .fetch_metadata(topic, REQUEST_TIMEOUT)
            .map_err(|e| match topic {
                Some(t) => {
                    format!("cannot read the partitions of topic `{t}` from {bootstrap}: {e}")
                }
                None => format!("cannot list the topics of {bootstrap}: {e}"),
            })?;
        for t in md.topics() {
            let wanted = match (topic, pattern) {
                (Some(name), _) => t.name() == name,
                (None, Some(p)) => p.is_match(t.name()),
                (None, None) => false,
            };
            if !wanted {
                continue;
            }
            if let Some(e) = t.error() {
                return Err(format!("topic `{}` on {bootstrap}: {e:?}", t.name()));
            }
            if t.partitions().is_empty() {
                return Err(format!(
                    "topic `{}` on {bootstrap} has no partitions",
                    t.name()
                ));
            }
            found.extend(t.partitions().iter().map(|p| (t.name().to_owned(), p.id())));
        }
        if let Some(name) = topic
            && !found.iter().any(|(t, _)| t == name)
        {
            return Err(format!("no topic `{name}` on {bootstrap}"));
        }
        Ok(())
    };
    for t in topics {
        read(Some(t))?;
    }
    if pattern.is_some() {
        read(None)?;
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// A librdkafka client's settings: sluice's `defaults`, then the spec's
/// `properties`, which win.
pub(crate) fn client_config(
    bootstrap: &str,
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "sluice")
        .set("log_level", "4");
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

impl KafkaSourceOptions {
    fn consumer(&self) -> Result<BaseConsumer, String> {
        let group = self.group_id.as_deref().unwrap_or("sluice-unnamed");
        let defaults = [
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            ("isolation.level", "read_committed"),
            // A position the broker no longer has is an error, never a
            // silent jump to the end (which a bounded source would take
            // for its end) or back to the start.
            ("auto.offset.reset", "error"),
            // librdkafka stops fetching for this long (1 s by default) once
            // its queue holds queued.min.messages; a pipeline slower than
            // the fetcher then drains the queue and idles. With W2 on
            // orders-1m: 5.4 s at the default, 1.6 s at 10 ms.
            ("fetch.queue.backoff.ms", "10"),
            ("group.id", group),
        ];
        client_config(&self.bootstrap, &defaults, &self.properties)
            .create()
            .map_err(|e| format!("cannot create a Kafka consumer for {}: {e}", self.bootstrap))
    }
}

impl KafkaSourceFactory {
    /// Reads the topics' partitions (and, bounded, their end offsets) from
    /// the broker.
    pub fn new(mut options: KafkaSourceOptions) -> Result<KafkaSourceFactory, String> {
        options.topics.extend(options.topic.take());
        let pattern = options
            .topic_pattern
            .as_deref()
            .map(|p| {
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("`topic_pattern`: {e}"))
            })
            .transpose()?;
        if options.topics.is_empty() && pattern.is_none() {
            return Err("a kafka source needs `topic`, `topics` or `topic_pattern`".into());
        }
        if options.start == StartOption::Group && options.group_id.is_none() {
            return Err("`start: group` needs a `group_id`".into());
        }
        if (options.start == StartOption::Timestamp) != options.start_timestamp.is_some() {
            return Err(
                "`start: timestamp` goes with `start_timestamp` (epoch ms), and only with it"
                    .into(),
            );
        }
        let consumer = options.consumer()?;
        let found = list_partitions(
            &consumer,
            &options.bootstrap,
            &options.topics,
            pattern.as_ref(),
        )?;
        if found.is_empty() && options.bounded {
            return Err(format!(
                "no topic on {} matches `{}`",
                options.bootstrap,
                options.topic_pattern.as_deref().unwrap_or_default()
            ));
        }
        let mut partitions = Vec::new();
        for (topic, partition) in found {
            let end = if options.bounded {
                Some(end_offset(&options, &consumer, &topic, partition)?)
            } else {
                None
            };
            tracing::debug!(bootstrap = %options.bootstrap, "kafka: {topic}/{partition}, end offset {end:?}");
            partitions.push(Partition {
                topic,
                partition,
                end,
            });
        }
        close_in_background(consumer);
        Ok(KafkaSourceFactory {
            options: Arc::new(options),
            partitions,
            pattern,
        })
    }

    /// How often to look for new partitions: never when bounded.
    fn discovery_interval(&self) -> Option<Duration> {
        if self.options.bounded {
            return None;
        }
        let d = self
            .options
            .discovery_interval
            .map_or(Duration::from_secs(30), |d| d.0);
        (!d.is_zero()).then_some(d)
    }
}

/// The offset after the last record of a partition now: the high
/// watermark, or past it when the batch that holds the record just before
/// the listed high watermark, or the fetch response that brings it, reaches
/// further. (Tansu 0.6 lists the high watermark as one past the *first*
/// record of a batch, not always the last one; its fetch responses carry the
/// right one. A broker that lists it right makes this read find nothing
/// beyond it.)
fn end_offset(
    options: &KafkaSourceOptions,
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
) -> Result<i64, String> {
    let what = |e: rdkafka::error::KafkaError| {
        format!(
            "cannot read the end offset of {topic}/{partition} from {}: {e}",
            options.bootstrap
        )
    };
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map_err(what)?;
    if high <= low {
        return Ok(high);
    }
    let probe = options.consumer()?;
    // The leader known first, or the fetch waits for librdkafka's next
    // metadata refresh.
    probe
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(what)?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(high - 1))
        .map_err(what)?;
    probe.assign(&list).map_err(what)?;
    let mut end = high;
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    let mut seen = false;
    while std::time::Instant::now() < deadline {
        match probe.poll(Duration::from_millis(if seen { 0 } else { 100 })) {
            Some(Ok(m)) => {
                seen = true;
                end = end.max(m.offset() + 1);
                // The high watermark of the fetch response that brought it
                // (right also where the listed one is not: Tansu with S3
                // storage lists an offset far before the end).
                if let Some(fetched) = fetched_high_watermark(&probe, topic, partition) {
                    end = end.max(fetched);
                }
            }
            Some(Err(e)) => return Err(what(e)),
            // The fetch that brought the batch is drained (or the partition
            // has nothing readable at the high watermark, such as a
            // transaction marker).
            None if seen => break,
            None => {
                if let Ok(pos) = probe.position()
                    && let Some(Offset::Offset(p)) =
                        pos.find_partition(topic, partition).map(|e| e.offset())
                    && p >= high
                {
                    break;
                }
            }
        }
    }
    close_in_background(probe);
    Ok(end)
}

/// Drops a client that is no longer needed on a thread of its own: closing
/// a librdkafka client takes ~100 ms (its broker threads wind down), which
/// would otherwise come before the job's first record.
fn close_in_background(consumer: BaseConsumer) {
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || drop(consumer));
    if let Err(e) = spawned {
        tracing::debug!("kafka: closing a client in place (no thread: {e})");
    }
}

/// The high watermark of the last fetch response for a partition, as
/// librdkafka keeps it (`rd_kafka_get_watermark_offsets`, which the rdkafka
/// crate does not wrap).
fn fetched_high_watermark(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is live for `consumer`'s lifetime, the
    // topic is a NUL-terminated string, and librdkafka only writes the two
    // offsets.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

impl SourceFactory for KafkaSourceFactory {
    fn splits(&self) -> Option<usize> {
        Some(self.partitions.len().max(1))
    }

    fn format(&self) -> Format {
        self.options.format.into()
    }

    fn record_timestamps(&self) -> bool {
        true
    }

    fn create(&self, subtask: u32, parallelism: u32) -> Box<dyn Source> {
        let mine = self
            .partitions
            .iter()
            .filter(|p| owner(&p.topic, p.partition, parallelism) == subtask)
            .map(|p| Reading {
                partition: p.clone(),
                next: None,
                split: None,
                done: false,
            })
            .collect();
        Box::new(KafkaSource {
            options: self.options.clone(),
            partitions: mine,
            consumer: None,
            discovery: self.discovery_interval().map(|every| Discovery {
                every,
                pattern: self.pattern.clone(),
                subtask,
                parallelism,
                found: None,
                _stop: None,
            }),
            restored: Positions::new(),
            warned: None,
            unreported: 0,
        })
    }
}

struct Reading {
    partition: Partition,
    /// The offset of the next record to read, once known.
    next: Option<i64>,
    split: Option<SplitId>,
    done: bool,
}

struct KafkaSource {
    options: Arc<KafkaSourceOptions>,
    partitions: Vec<Reading>,
    consumer: Option<BaseConsumer>,
    discovery: Option<Discovery>,
    /// Positions from the restored checkpoint, for partitions found later.
    restored: Positions,
    /// When a consumer error was last logged, and how many since.
    warned: Option<std::time::Instant>,
    unreported: u64,
}

/// What one discovery round found: topics and partitions.
type Found = Result<Vec<(String, i32)>, String>;

/// Looking for new partitions, in a thread of its own (metadata requests
/// block).
struct Discovery {
    every: Duration,
    pattern: Option<regex::Regex>,
    subtask: u32,
    parallelism: u32,
    /// The thread's findings.
    found: Option<std::sync::mpsc::Receiver<Found>>,
    /// The thread ends as soon as this is dropped (with the source).
    _stop: Option<std::sync::mpsc::Sender<()>>,
}

impl Discovery {
    fn start(&mut self, options: Arc<KafkaSourceOptions>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (every, pattern) = (self.every, self.pattern.clone());
        let spawned = std::thread::Builder::new()
            .name("kafka-discovery".into())
            .spawn(move || {
                let consumer = match options.consumer() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                // Nothing is ever sent on `stop`: the wait ends early only
                // when the source drops it.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    let found = list_partitions(
                        &consumer,
                        &options.bootstrap,
                        &options.topics,
                        pattern.as_ref(),
                    );
                    match tx.try_send(found) {
                        Ok(()) | Err(std::sync::mpsc::TrySendError::Full(_)) => {}
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("kafka: no partition discovery (cannot start its thread: {e})");
            return;
        }
        self.found = Some(rx);
        self._stop = Some(stop);
    }
}

fn kafka_error(what: String) -> impl FnOnce(rdkafka::error::KafkaError) -> RuntimeError {
    move |e| RuntimeError::Io {
        context: what,
        source: std::io::Error::other(e.to_string()),
    }
}

impl KafkaSource {
    fn start_offset(&self) -> Offset {
        match self.options.start {
            StartOption::Earliest => Offset::Beginning,
            StartOption::Latest => Offset::End,
            StartOption::Timestamp | StartOption::Group => Offset::Beginning,
        }
    }

    /// Adds to `into` the group's committed offsets for `partitions`'
    /// (`start: group`), or the fallback for those it has none for.
    fn add_group_offsets(
        &self,
        consumer: &BaseConsumer,
        partitions: TopicPartitionList,
        into: &mut TopicPartitionList,
    ) -> Result<(), RuntimeError> {
        let group = self.options.group_id.as_deref().expect("checked");
        let found = consumer
            .committed_offsets(partitions, REQUEST_TIMEOUT)
            .map_err(kafka_error(format!(
                "reading the offsets of group `{group}` on {}",
                self.options.bootstrap
            )))?;
        for e in found.elements() {
            let offset = match (e.offset(), self.options.group_fallback) {
                (Offset::Offset(o), _) => Offset::Offset(o),
                (_, GroupFallback::Earliest) => Offset::Beginning,
                (_, GroupFallback::Latest) => Offset::End,
                (_, GroupFallback::Fail) => {
                    return Err(RuntimeError::Io {
                        context: format!("kafka topic {} partition {}", e.topic(), e.partition()),
                        source: std::io::Error::other(format!(
                            "group `{group}` has no committed offset for it (set `group_fallback: earliest` or `latest` to start anyway)"
                        )),
                    });
                }
            };
            into.add_partition_offset(e.topic(), e.partition(), offset)
                .map_err(kafka_error(split_name(e.topic(), e.partition())))?;
        }
        Ok(())
    }
}

/// The next record or error ready in the consumer's queue. A poll that
/// takes an event that is neither (a log line, an offset commit's result)
/// from the queue returns none, though records may wait behind it: polls
/// go on until the queue yields one, or seems empty.
fn next_message(
    consumer: &BaseConsumer,
) -> Option<rdkafka::error::KafkaResult<BorrowedMessage<'_>>> {
    (0..32).find_map(|_| consumer.poll(Duration::ZERO))
}

impl KafkaSource {
    /// Starts reading the partitions discovery found that are this
    /// subtask's and new: from the restored position, else the earliest
    /// offset (as Flink does, so that nothing written to a new partition
    /// before it was found is missed).
    fn add_partitions(
        &mut self,
        found: Vec<(String, i32)>,
        out: &mut SourceOutput,
    ) -> Result<(), RuntimeError> {
        let d = self.discovery.as_ref().expect("discovering");
        let mut list = TopicPartitionList::new();
        for (topic, partition) in found {
            if owner(&topic, partition, d.parallelism) != d.subtask
                || self
                    .partitions
                    .iter()
                    .any(|r| r.partition.partition == partition && r.partition.topic == topic)
            {
                continue;
            }
            let p = Partition {
                topic,
                partition,
                end: None,
            };
            let next = self.restored.get(&p.name()).and_then(|v| v.as_i64());
            tracing::info!(bootstrap = %self.options.bootstrap, "kafka: found {}/{}, reading it from {}", p.topic, p.partition, next.map_or("the earliest offset".into(), |n| format!("offset {n}")));
            list.add_partition_offset(
                &p.topic,
                p.partition,
                next.map_or(Offset::Beginning, Offset::Offset),
            )
            .map_err(kafka_error(p.name()))?;
            self.partitions.push(Reading {
                split: Some(out.add_partition(p.name(), &p.topic, p.partition)),
                partition: p,
                next,
                done: false,
            });
        }
        if list.count() > 0 {
            let consumer = self.consumer.as_ref().expect("opened");
            consumer
                .incremental_assign(&list)
                .map_err(kafka_error(format!(
                    "assigning new partitions on {}",
                    self.options.bootstrap
                )))?;
        }
        Ok(())
    }
}

impl Source for KafkaSource {
    fn open(&mut self, out: &mut SourceOutput) -> Result<(), RuntimeError> {
        let consumer = self.options.consumer().map_err(|m| RuntimeError::Io {
            context: m,
            source: std::io::Error::other("kafka"),
        })?;
        let mut list = TopicPartitionList::new();
        let mut by_time = TopicPartitionList::new();
        let mut by_group = TopicPartitionList::new();
        let default = self.start_offset();
        for r in &mut self.partitions {
            let p = &r.partition;
            r.split = Some(out.add_partition(p.name(), &p.topic, p.partition));
            let offset = match r.next {
                Some(o) => Offset::Offset(o),
                None if self.options.start == StartOption::Timestamp => {
                    by_time
                        .add_partition_offset(
                            &p.topic,
                            p.partition,
                            Offset::Offset(self.options.start_timestamp.expect("checked")),
                        )
                        .map_err(kafka_error(p.name()))?;
                    continue;
                }
                None if self.options.start == StartOption::Group => {
                    by_group.add_partition(&p.topic, p.partition);
                    continue;
                }
                None => default,
            };
            list.add_partition_offset(&p.topic, p.partition, offset)
                .map_err(kafka_error(p.name()))?;
        }
        if by_group.count() > 0 {
            self.add_group_offsets(&consumer, by_group, &mut list)?;
        }
        // The partitions' leaders, known before the assignment: a partition
        // assigned while the new client has no metadata gets "no current
        // leader" and librdkafka retries its start-offset query on a 500 ms
        // timer — most of the time to a first record (0.75 s → see
        // bench/kafka.py's first_record_s).
        let mut topics: Vec<&str> = self
            .partitions
            .iter()
            .map(|r| r.partition.topic.as_str())
            .collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            consumer
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .map_err(kafka_error(format!(
                    "reading the metadata of topic `{topic}` from {}",
                    self.options.bootstrap
                )))?;
        }
        if by_time.count() > 0 {
            let found = consumer
                .offsets_for_times(by_time, REQUEST_TIMEOUT)
                .map_err(kafka_error(format!(
                    "looking up offsets by time on {}",
                    self.options.bootstrap
                )))?;
            for e in found.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::End,
                };
                list.add_partition_offset(e.topic(), e.partition(), offset)
                    .map_err(kafka_error(format!("{}/{}", e.topic(), e.partition())))?;
            }
        }
        consumer.assign(&list).map_err(kafka_error(format!(
            "assigning partitions on {}",
            self.options.bootstrap
        )))?;
        for r in &mut self.partitions {
            let p = &r.partition;
            let Some(end) = p.end else { continue };
            // Bounded and starting at (or past) its end: nothing to read.
            let start = list
                .find_partition(&p.topic, p.partition)
                .map(|e| e.offset());
            r.done = match start {
                _ if end == 0 => true,
                Some(Offset::Offset(o)) => o >= end,
                // The end now is the end seen at job start (or later).
                Some(Offset::End) => true,
                _ => false,
            };
            if r.done {
                out.finish_split(r.split.expect("registered"));
            }
        }
        self.consumer = Some(consumer);
        if let Some(d) = &mut self.discovery {
            d.start(self.options.clone());
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput) -> Result<SourcePoll, RuntimeError> {
        let found = self
            .discovery
            .as_ref()
            .and_then(|d| d.found.as_ref()?.try_recv().ok());
        match found {
            Some(Ok(found)) => self.add_partitions(found, out)?,
            Some(Err(e)) => {
                tracing::warn!(bootstrap = %self.options.bootstrap, "kafka: partition discovery: {e}")
            }
            None => {}
        }
        let consumer = self.consumer.as_ref().expect("opened");
        loop {
            if self.options.bounded && self.partitions.iter().all(|r| r.done) {
                return Ok(SourcePoll::Finished);
            }
            if out.is_full() {
                return Ok(SourcePoll::More);
            }
            let Some(m) = next_message(consumer) else {
                if self.options.bounded {
                    // A partition whose last records are transaction
                    // markers ends where the consumer's position passes
                    // its end.
                    if let Ok(positions) = consumer.position() {
                        for r in self.partitions.iter_mut().filter(|r| !r.done) {
                            let p = &r.partition;
                            if let Some(Offset::Offset(at)) = positions
                                .find_partition(&p.topic, p.partition)
                                .map(|e| e.offset())
                                && p.end.is_some_and(|end| at >= end)
                            {
                                r.done = true;
                                out.finish_split(r.split.expect("registered"));
                            }
                        }
                    }
                    if self.partitions.iter().all(|r| r.done) {
                        return Ok(SourcePoll::Finished);
                    }
                }
                return Ok(SourcePoll::Wait(Duration::from_millis(5)));
            };
            let m = match m {
                Ok(m) => m,
                // A position the broker no longer has (`auto.offset.reset`
                // is `error`): the job cannot go on from there.
                Err(
                    e @ rdkafka::error::KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
                    ),
                ) => {
                    return Err(RuntimeError::Io {
                        context: format!("kafka source on {}", self.options.bootstrap),
                        source: std::io::Error::other(format!(
                            "{e} (the position is gone from the broker, for example by retention; set `properties: {{auto.offset.reset: earliest}}` to skip to what is left)"
                        )),
                    });
                }
                Err(e) => {
                    // librdkafka retries broker and network failures by
                    // itself; they are reported here for the log, at most
                    // every 5 s (an outage brings one every 100 ms).
                    let now = std::time::Instant::now();
                    if self
                        .warned
                        .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(5))
                    {
                        let more = std::mem::take(&mut self.unreported);
                        let more = if more > 0 {
                            format!(" ({more} more errors since the last report)")
                        } else {
                            String::new()
                        };
                        tracing::warn!(bootstrap = %self.options.bootstrap, "kafka: {e}{more}");
                        self.warned = Some(now);
                    } else {
                        self.unreported += 1;
                    }
                    return Ok(SourcePoll::Wait(Duration::from_millis(100)));
                }
            };
            // The topic name is compared only when several are read (it is
            // decoded from librdkafka's bytes on every call).
            let several = self.options.topic_pattern.is_some() || self.options.topics.len() > 1;
            let Some(r) = self.partitions.iter_mut().find(|r| {
                r.partition.partition == m.partition()
                    && (!several || r.partition.topic == m.topic())
            }) else {
                continue;
            };
            if r.done {
                continue;
            }
            let split = r.split.expect("registered");
            r.next = Some(m.offset() + 1);
            // A tombstone (no value) reads as JSON `null` (and is skipped
            // as a change event); a header without a value as an empty one.
            let value = m.payload().unwrap_or(match self.options.format {
                FormatOption::Json | FormatOption::JsonUnchecked | FormatOption::DebeziumJson => {
                    b"null"
                }
                FormatOption::Raw => b"",
            });
            let headers = m
                .headers()
                .into_iter()
                .flat_map(|h| h.iter())
                .map(|h| (h.key.as_bytes(), h.value.unwrap_or(b"")));
            out.push_record(
                split,
                m.key(),
                value,
                m.timestamp().to_millis(),
                headers,
                m.offset() as u64,
            )?;
            if let Some(end) = r.partition.end
                && m.offset() + 1 >= end
            {
                r.done = true;
                out.finish_split(split);
            }
        }
    }

    fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        self.partitions
            .iter()
            .filter_map(|r| Some((r.partition.name(), r.next?.into())))
            .collect()
    }

    fn checkpoint_complete(&mut self, positions: &Positions) {
        let (Some(consumer), Some(group)) = (&self.consumer, &self.options.group_id) else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for r in &self.partitions {
            let p = &r.partition;
            if let Some(n) = positions.get(&p.name()).and_then(|v| v.as_i64()) {
                let _ = list.add_partition_offset(&p.topic, p.partition, Offset::Offset(n));
            }
        }
        if list.count() == 0 {
            return;
        }
        // Asynchronous, and only for monitoring: a failure is logged.
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(bootstrap = %self.options.bootstrap, "kafka: cannot commit the checkpoint's offsets to group `{group}`: {e}");
        }
    }

    fn restore(
        &mut self,
        positions: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), RuntimeError> {
        for r in &mut self.partitions {
            if let Some(n) = positions.get(&r.partition.name()).and_then(|v| v.as_i64()) {
                r.next = Some(n);
            }
        }
        self.restored = positions.clone();
        Ok(())
    }
}
