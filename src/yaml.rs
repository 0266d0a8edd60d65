//! Bounded YAML parsing for everything Portcullis reads from users (manifests, request bodies,
//! annotations): a size cap before the parser runs, and serde_yaml's own limits on nesting and
//! alias expansion, so a hostile document is refused quickly with bounded memory.

use serde_json::Value;

/// Largest YAML input accepted.
pub const MAX_YAML: usize = 4 * 1024 * 1024;

/// Errors from bounded YAML parsing.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// The input is larger than [`MAX_YAML`].
    #[error("the document is larger than {MAX_YAML} bytes")]
    TooLarge,
    /// The YAML is malformed (or exceeds the parser's nesting and alias limits).
    #[error("{0}")]
    Parse(#[from] serde_yaml::Error),
}

/// Parse one YAML (or JSON) document into a JSON value.
pub fn from_slice(bytes: &[u8]) -> Result<Value, YamlError> {
    if bytes.len() > MAX_YAML {
        return Err(YamlError::TooLarge);
    }
    Ok(serde_yaml::from_slice(bytes)?)
}

/// Parse a multi-document YAML stream; empty documents are skipped.
pub fn documents(bytes: &[u8]) -> Result<Vec<Value>, YamlError> {
    if bytes.len() > MAX_YAML {
        return Err(YamlError::TooLarge);
    }
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_slice(bytes) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_streams() {
        let docs = documents(b"a: 1\n---\n---\nb: [1, 2]\n").expect("docs");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["b"][1], 2);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
        assert!(from_slice(bomb.as_bytes()).is_err());
    }

    #[test]
    fn oversize_and_deep_input_is_refused() {
        assert!(matches!(
            from_slice(&vec![b' '; MAX_YAML + 1]),
            Err(YamlError::TooLarge)
        ));
        let deep = "[".repeat(10_000);
        assert!(from_slice(deep.as_bytes()).is_err());
    }
}
