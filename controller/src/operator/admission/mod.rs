//! The optional validating admission webhook (`postern controller --webhook-address`):
//! refuses at `kubectl apply` (and `--dry-run=server`, `kubectl diff`) an object the
//! compiler would not accept in the context of its namespace, with the lines `postern
//! plan` prints; allows references to objects not created yet, with a warning.
//!
//! - `review`: the decision, pure (compile the namespace with the incoming object).
//! - `cert`: the serving certificate and its CA, made with rcgen; when to renew, pure.
//! - `cert_store`: the certificate's Secret and the `caBundle` of the configuration.
//! - `server`: HTTPS, the AdmissionReview endpoint, certificate reloads.
//! - `metrics`: reviews by decision.

pub(crate) mod cert;
pub(crate) mod cert_store;
pub(crate) mod metrics;
pub(crate) mod review;
pub(crate) mod server;
