//! `MailFlowPolicy` → `policies.<name>`.

use postern_config::defaults;
use postern_config::{Limits, MailFlowPolicy, RateLimit, RateLimits, SenderBinding};
use postern_crds::MailFlowPolicySpec;

use super::inputs::{Diags, duration};
use super::report::Reason;
use super::{policy_action, tls_mode};

/// Render one MailFlowPolicy. `None` when it has errors (they are in `d`).
pub(crate) fn render(spec: &MailFlowPolicySpec, d: &mut Diags) -> Option<MailFlowPolicy> {
    let limits = spec.limits.as_ref();
    let max_message_size = match limits.and_then(|l| l.max_message_size.as_ref()) {
        None => defaults::MAX_MESSAGE_SIZE,
        Some(q) => match q.to_u64() {
            Ok(0) => {
                d.error(
                    "spec.limits.maxMessageSize",
                    Reason::InvalidValue,
                    "must be greater than 0",
                );
                0
            }
            Ok(v) => v,
            Err(e) => {
                d.error(
                    "spec.limits.maxMessageSize",
                    Reason::InvalidValue,
                    e.to_string(),
                );
                0
            }
        },
    };
    let rate_limits = rate_limits(spec.rate_limits.as_ref(), d);
    if d.has_errors() {
        return None;
    }
    Some(MailFlowPolicy {
        action: policy_action(spec.action),
        tls: tls_mode(spec.tls),
        verify_client_certificate: spec.verify_client_certificate,
        require_smtp_auth: spec.require_smtp_auth,
        require_tls_for_smtp_auth: spec.require_tls_for_smtp_auth,
        limits: Limits {
            max_message_size,
            max_recipients: limits
                .and_then(|l| l.max_recipients)
                .unwrap_or(defaults::MAX_RECIPIENTS),
            max_messages_per_session: limits
                .and_then(|l| l.max_messages_per_session)
                .unwrap_or(defaults::MAX_MESSAGES_PER_SESSION),
        },
        rate_limits,
        sender_binding: spec
            .sender_binding
            .map_or(SenderBinding::Off, sender_binding),
    })
}

fn sender_binding(b: postern_crds::SenderBinding) -> SenderBinding {
    match b {
        postern_crds::SenderBinding::Off => SenderBinding::Off,
        postern_crds::SenderBinding::Monitor => SenderBinding::Monitor,
        postern_crds::SenderBinding::Enforce => SenderBinding::Enforce,
    }
}

/// `spec.rateLimits`: each part defaults to unlimited over `1h`.
fn rate_limits(spec: Option<&postern_crds::RateLimits>, d: &mut Diags) -> RateLimits {
    let mut one = |field: &str, r: Option<&postern_crds::RateLimit>| RateLimit {
        messages: r.and_then(|r| r.messages).unwrap_or(0),
        recipients: r.and_then(|r| r.recipients).unwrap_or(0),
        window: duration(
            &format!("spec.rateLimits.{field}.window"),
            r.and_then(|r| r.window.as_ref()),
            defaults::RATE_LIMIT_WINDOW,
            d,
        ),
    };
    RateLimits {
        per_user: one("perUser", spec.and_then(|s| s.per_user.as_ref())),
        per_client: one("perClient", spec.and_then(|s| s.per_client.as_ref())),
    }
}
