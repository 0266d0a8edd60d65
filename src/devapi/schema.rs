//! TEMPORARY STAND-IN (replaced by the real schema module).
use serde_json::Value;
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
}
pub enum FieldErrorKind {
    Invalid,
}
impl FieldErrorKind {
    pub fn reason(&self) -> &'static str {
        "FieldValueInvalid"
    }
}
impl FieldError {
    pub fn message(&self) -> String {
        self.field.clone()
    }
}
pub struct Outcome {
    pub errors: Vec<FieldError>,
    pub unknown_fields: Vec<String>,
}
pub fn validate(_schema: &Value, _obj: &mut Value, _old: Option<&Value>) -> Outcome {
    Outcome {
        errors: vec![],
        unknown_fields: vec![],
    }
}
