//! keywatch's domain core: CloudTrail records for KMS in, per-key timelines and alerts out.
//!
//! Pure functions and types, no I/O. The flow is
//! [`normalise`] (record → [`KmsEvent`]s) → [`KeyTimeline::fold`] / [`KeyTimeline::apply`]
//! (events → timeline) → [`evaluate`] (timeline → [`Alert`]s).

pub mod alert;
pub mod event;
pub mod page;
pub mod preflight;
pub mod protects;
pub mod record;
pub mod time;
pub mod timeline;

pub use alert::{
    evaluate, evaluate_clock, evaluate_events, evaluate_events_unless, Alert, AlertConfig,
    AlertKind, Severity,
};
pub use event::{
    normalise, normalise_found, normalise_object, normalise_record, BackingKeyDeletionStatus,
    KeyArn, KeyEvent, KeyEventKind, KeyOrigin, KeyState, KeyStoreEvent, KeyStoreRef, KmsEvent,
    KmsOperation, Normalised, NormalisedOnRead, Principal, RecordError,
};
pub use time::Timestamp;
pub use timeline::{
    FoldedEvidence, KeyTimeline, LastChange, OrderedFold, OutOfTimeOrder, RecordsReach,
    SnapshotRef, TIMELINE_FORMAT,
};
