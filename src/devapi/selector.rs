//! TEMPORARY STAND-IN (replaced by the real selector module).
use serde_json::{Map, Value};
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);
pub struct LabelSelector(Vec<(String, String)>);
impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut v = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, val) = part
                .split_once('=')
                .ok_or_else(|| SelectorError(format!("bad {part}")))?;
            v.push((k.to_string(), val.trim_start_matches('=').to_string()));
        }
        Ok(Self(v))
    }
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.0
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
pub struct FieldSelector(Vec<(String, String)>);
impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let l = LabelSelector::parse(s)?;
        Ok(Self(l.0))
    }
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, v)| {
            obj.pointer(&format!("/{}", k.replace('.', "/")))
                .and_then(Value::as_str)
                .unwrap_or("")
                == v
        })
    }
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
