//! Why a reconcile fails (it is retried with backoff).

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client error.
        source: kube::Error,
    },
    /// This replica stopped leading in the middle.
    #[error("lost leadership during the reconcile")]
    NotLeader,
}

impl ReconcileError {
    /// Short CamelCase reason for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Api { source, .. } => match source {
                kube::Error::Api(e) if e.code == 409 => "Conflict",
                kube::Error::Api(e) if e.code == 403 => "Forbidden",
                kube::Error::Api(_) => "ApiError",
                _ => "ConnectionError",
            },
            Self::NotLeader => "NotLeader",
        }
    }
}

/// Maps a client error to [`ReconcileError::Api`] saying `what` was being done.
pub(crate) fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Api { what, source }
}
