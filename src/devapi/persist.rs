//! TEMPORARY STAND-IN (replaced by the real persistence module).
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
pub enum Op {
    Put { key: String, object: Value },
    Delete { key: String },
}
pub struct Record {
    pub rv: u64,
    pub op: Op,
}
pub struct Loaded {
    pub objects: Vec<(String, Value)>,
    pub resource_version: u64,
    pub warnings: Vec<String>,
}
pub type SnapshotFn = Box<dyn Fn() -> (u64, Vec<(String, Arc<Value>)>) + Send + 'static>;
#[derive(Debug, Clone, Default)]
pub struct PersistOptions {}
#[derive(Debug, thiserror::Error)]
#[error("persist")]
pub struct PersistError;
pub struct Persistence;
impl Persistence {
    pub fn open(_dir: &Path) -> Result<(Self, Loaded), PersistError> {
        Ok((
            Self,
            Loaded {
                objects: vec![],
                resource_version: 0,
                warnings: vec![],
            },
        ))
    }
    pub fn start(&mut self, _s: SnapshotFn, _o: PersistOptions) -> Result<(), PersistError> {
        Ok(())
    }
    pub fn submit(&self, _r: Record) -> tokio::sync::oneshot::Receiver<Result<(), PersistError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Ok(()));
        rx
    }
    pub fn close(self) -> Result<(), PersistError> {
        Ok(())
    }
}
