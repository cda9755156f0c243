//! Sender binding (`MailFlowPolicy.senderBinding`): `MAIL FROM` of an authenticated
//! session against the addresses of the user it is authenticated as, asked of the
//! backend that authenticated it (the certificate's for certificate and `AUTH EXTERNAL`
//! sessions, the AUTH profile's otherwise).
//!
//! Every check is a decision line (`decision=sender_binding`, outcome `own`, `foreign`
//! or `unavailable`) and a count in `postern_sender_binding_total`. Under `Enforce` a
//! foreign sender gets `553 5.7.1` and a directory that cannot answer `451 4.7.1`;
//! under `Monitor` both are accepted. Unauthenticated sessions and the null sender `<>`
//! (a bounce impersonates nobody) are not checked.

use std::sync::Arc;

use crate::auth::AddressBook;
use crate::metrics::SenderBindingLabels;
use crate::smtp::received;
use crate::wire::reply::Reply;
use postern_config::SenderBinding;
use postern_config::sender::sender_is_own;

use super::Connection;

/// The reply to a foreign sender under `Enforce`.
pub(crate) fn foreign_sender() -> Reply {
    Reply::new(
        553,
        "5.7.1",
        "Sender address is not one of the authenticated user's addresses",
    )
}

/// The reply when the user's addresses cannot be read under `Enforce`.
pub(crate) fn sender_check_unavailable() -> Reply {
    Reply::new(
        451,
        "4.7.1",
        "Sender address cannot be checked now, try again later",
    )
}

impl Connection {
    /// Check `from` under the policy's `senderBinding`: `Err` with the reply when the
    /// sender is refused.
    pub(super) async fn check_sender(&mut self, from: &str) -> Result<(), Reply> {
        let mode = self.policy.policy.sender_binding;
        if mode.is_off() || from.is_empty() {
            return Ok(());
        }
        let Some(auth) = self.st.auth.clone() else {
            return Ok(());
        };
        let Some(book) = self.address_book(auth.method) else {
            return Ok(());
        };
        let shown = received::sanitize(from, 256);
        let (outcome, reason, refusal) = match book.addresses(&auth.user).await {
            Ok(addresses) if sender_is_own(from, &addresses) => (
                "own",
                format!(
                    "{}: <{shown}> is an address of {}",
                    mode.as_str(),
                    auth.user
                ),
                None,
            ),
            Ok(addresses) => (
                "foreign",
                format!(
                    "{}: <{shown}> is not among the {} address(es) of {}",
                    mode.as_str(),
                    addresses.len(),
                    auth.user
                ),
                Some(foreign_sender()),
            ),
            Err(e) => (
                "unavailable",
                format!(
                    "{}: the addresses of {} could not be read: {e}",
                    mode.as_str(),
                    auth.user
                ),
                Some(sender_check_unavailable()),
            ),
        };
        self.ctx
            .metrics
            .sender_binding
            .get_or_create(&SenderBindingLabels {
                listener: self.listener.name.clone(),
                policy: self.policy.name.clone(),
                mode: mode.as_str().to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.decision("sender_binding", outcome, &reason);
        match refusal {
            Some(r) if mode == SenderBinding::Enforce => Err(r),
            _ => Ok(()),
        }
    }

    /// The address book of the backend that authenticated the session with `method`.
    fn address_book(&self, method: &str) -> Option<Arc<dyn AddressBook>> {
        let auth = self.listener.auth.as_ref()?;
        if method == "certificate" || method == "EXTERNAL" {
            auth.certificate_addresses.clone()
        } else {
            auth.smtp_auth.as_ref().map(|a| a.addresses.clone())
        }
    }
}
