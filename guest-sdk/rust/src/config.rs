//! [`Config`]: the operator's settings from the pipeline spec.

use serde::de::DeserializeOwned;

use crate::Error;

/// The operator's `config` from the pipeline spec, as JSON text.
///
/// The host passes it to `open` once per instance. When the spec gives no
/// config the text is `null`, and [`Config::parse`] returns your type's
/// `Default`, so a config struct with `#[serde(default)]` fields makes every
/// setting optional:
///
/// ```
/// use serde::Deserialize;
/// use sluice_guest::Config;
///
/// #[derive(Deserialize, Default)]
/// #[serde(default, deny_unknown_fields)]
/// struct Settings {
///     field: Option<String>,
///     limit: u32,
/// }
///
/// let s: Settings = Config::new(r#"{"limit": 3}"#).parse()?;
/// assert_eq!((s.field, s.limit), (None, 3));
/// let s: Settings = Config::new("null").parse()?;
/// assert_eq!(s.limit, 0);
/// assert!(Config::new(r#"{"limt": 3}"#).parse::<Settings>().is_err());
/// # Ok::<(), sluice_guest::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    raw: String,
}

impl Config {
    /// A config with this JSON text; for unit tests of an operator's `open`.
    pub fn new(json: impl Into<String>) -> Self {
        Config { raw: json.into() }
    }

    /// The JSON text as the host sent it (`null` when the spec has no config).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Deserializes the config; `null` (or nothing at all) gives `T::default()`.
    ///
    /// The error quotes the config, so that the job's failure message shows
    /// what was wrong with the spec.
    pub fn parse<T: DeserializeOwned + Default>(&self) -> Result<T, Error> {
        let raw = self.raw.trim();
        if raw.is_empty() || raw == "null" {
            return Ok(T::default());
        }
        serde_json::from_str(raw).map_err(|e| {
            const MAX: usize = 200;
            let shown = match raw.char_indices().nth(MAX) {
                Some((cut, _)) => format!("{}...", &raw[..cut]),
                None => raw.to_owned(),
            };
            Error::new(format!("invalid operator config {shown}: {e}"))
        })
    }
}
