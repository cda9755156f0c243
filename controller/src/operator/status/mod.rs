//! What status each object should carry, computed without the API server (pure).
//!
//! [`desired`] takes a namespace's inputs (the compiler's report, the published
//! configuration, the fleet) and one object's (its kind, generation and current status)
//! and says the status it should carry, in its kind's type ([`KindStatus`]), whether that
//! needs a write, and which Events the change deserves. Writing it is the status
//! writer's job (`status_writer`).

pub(crate) mod conditions;
pub(crate) mod crl;
pub(crate) mod desired;
pub(crate) mod kind;

pub(crate) use crl::CrlSettings;
pub(crate) use desired::{
    DesiredStatus, NamespaceInputs, Notice, ObjectInputs, Published, desired,
};
pub(crate) use kind::KindStatus;
