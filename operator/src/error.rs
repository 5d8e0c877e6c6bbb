//! Errors of the reconciler and the operator's process.

/// What can go wrong while reconciling. An invalid spec is not an error: it is
/// reported in status and waits for the next change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("object has no {0}")]
    MissingObjectKey(&'static str),

    #[error("cannot serve health and metrics: {0}")]
    Http(#[source] std::io::Error),

    #[error("tracing setup failed: {0}")]
    Telemetry(String),

    #[error("the DouyinEnvironment CRD is not installed or not readable: {0}")]
    CrdNotInstalled(#[source] kube::Error),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
            Error::MissingObjectKey(_) => "missing_object_key",
            Error::Http(_) => "http",
            Error::Telemetry(_) => "telemetry",
            Error::CrdNotInstalled(_) => "crd_not_installed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
