//! Quantities as a spec or a connector's options write them: durations
//! (`250ms`, `5s`, `1h 30m`, or milliseconds) and sizes (`64MiB`, or bytes).
//! They sit below every other module so that connectors and the planner read
//! them the same way.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A duration: `250ms`, `5s`, `1h 30m`, or a number of milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn millis(self) -> i64 {
        self.0.as_millis() as i64
    }

    /// `500ms`, `5s`, `1h`, …
    pub fn parse(text: &str) -> Result<Dur, String> {
        humantime::parse_duration(text).map(Dur).map_err(|e| {
            format!("`{text}` is not a duration ({e}); write e.g. `500ms`, `5s`, `1h`")
        })
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Dur(Duration::from_millis(ms))),
            Raw::Text(t) => Dur::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration that may be negative (a join bound): `-5s`, `10m`, `-1500`
/// (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedDur(pub i64);

impl<'de> Deserialize<'de> for SignedDur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SignedDur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(SignedDur(ms)),
            Raw::Text(t) => {
                let (sign, rest) = match t.trim().strip_prefix('-') {
                    Some(rest) => (-1, rest.trim()),
                    None => (1, t.trim()),
                };
                Dur::parse(rest)
                    .map(|d| SignedDur(sign * d.millis()))
                    .map_err(serde::de::Error::custom)
            }
        }
    }
}

/// A size in bytes: `64MiB`, `1GiB`, `512KiB`, `1000000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a size; write e.g. `64MiB`"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => {
                return Err(format!(
                    "`{text}`: unknown size unit (use B, KiB, MiB, GiB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(ByteSize(b)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}
