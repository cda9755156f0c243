//! The defaults of a CRD's structural schema applied to an object's `spec` as JSON, the
//! way the API server applies them when it stores the object.
//!
//! Several fields are optional in the typed model (absent means "the documented
//! default", which the compiler fills in) but have a schema default (DESIGN.md section 7,
//! "Defaults in brackets"), so the API server stores them. An object read from a file and
//! the same object read back from the cluster then differ only by those defaults;
//! `postern plan --live` compares the two after applying them to both.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::CustomResourceExt;

/// The schema of `K`'s `spec`, as generated into its CRD.
pub fn spec_schema<K: CustomResourceExt>() -> JSONSchemaProps {
    K::crd()
        .spec
        .versions
        .into_iter()
        .next()
        .and_then(|v| v.schema)
        .and_then(|s| s.open_api_v3_schema)
        .and_then(|s| s.properties)
        .and_then(|mut p| p.remove("spec"))
        .unwrap_or_default()
}

/// Fills in every missing property of `value` that `schema` gives a default, at every
/// level, as the API server does: a property's default applies where its parent object
/// exists, and a default object gets its own properties' defaults too.
pub fn apply_defaults(schema: &JSONSchemaProps, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, prop) in schema.properties.iter().flatten() {
                if !map.contains_key(name)
                    && let Some(default) = &prop.default
                {
                    map.insert(name.clone(), default.0.clone());
                }
                if let Some(child) = map.get_mut(name) {
                    apply_defaults(prop, child);
                }
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
                for v in items {
                    apply_defaults(item, v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrlSource, Listener};
    use serde_json::json;

    #[test]
    fn nested_defaults_apply_where_their_parent_exists() {
        let schema = spec_schema::<Listener>();
        let mut bare = json!({"port": 25});
        apply_defaults(&schema, &mut bare);
        assert!(bare.get("tls").is_none(), "{bare}");
        let mut with = json!({"port": 25, "tls": {"revocation": {}}});
        apply_defaults(&schema, &mut with);
        assert_eq!(with["tls"]["revocation"]["mode"], "CrlOnly", "{with}");
        assert_eq!(
            with["tls"]["revocation"]["onUnavailable"], "Refuse",
            "{with}"
        );
    }

    /// The schema's defaults are the values the compiler fills in for an absent field.
    #[test]
    fn schema_defaults_are_the_configuration_defaults() {
        use crate::{LdapProfile, MailFlowPolicy, SmtpAuthProfile};
        use postern_config::defaults as d;
        use postern_config::duration::parse_duration;
        let dur = |v: &serde_json::Value| {
            postern_config::Duration::from(parse_duration(v.as_str().unwrap()).unwrap())
        };

        let mut l = json!({"tls": {"revocation": {"ocsp": {}}}, "timeouts": {}, "nextHop": {}});
        apply_defaults(&spec_schema::<Listener>(), &mut l);
        assert_eq!(
            dur(&l["timeouts"]["tlsHandshake"]),
            d::LISTENER_TLS_HANDSHAKE_TIMEOUT
        );
        assert_eq!(
            dur(&l["timeouts"]["greeting"]),
            d::LISTENER_GREETING_TIMEOUT
        );
        assert_eq!(l["nextHop"]["xclient"], false);
        let ocsp = &l["tls"]["revocation"]["ocsp"];
        // `responderUrl` has none: absent and "" both mean the certificate's AIA (and API
        // servers before 1.21 refuse an empty string as a default).
        assert!(ocsp.get("responderUrl").is_none());
        assert_eq!(dur(&ocsp["timeout"]), d::OCSP_TIMEOUT);
        assert_eq!(dur(&ocsp["cacheMaxAge"]), d::OCSP_CACHE_MAX_AGE);

        let mut p = json!({"rateLimits": {"perUser": {}, "perClient": {}}});
        apply_defaults(&spec_schema::<MailFlowPolicy>(), &mut p);
        assert_eq!(p["senderBinding"], "Off");
        for scope in ["perUser", "perClient"] {
            let r = &p["rateLimits"][scope];
            assert_eq!(
                (r["messages"].as_u64(), r["recipients"].as_u64()),
                (Some(0), Some(0))
            );
            assert_eq!(dur(&r["window"]), d::RATE_LIMIT_WINDOW);
        }

        let mut a = json!({"certificate": {}, "ldap": {"throttle": {}}});
        apply_defaults(&spec_schema::<SmtpAuthProfile>(), &mut a);
        assert_eq!(a["certificate"]["requiredPolicies"], json!([]));
        assert_eq!(a["certificate"]["requiredEkus"], json!([]));
        let t = &a["ldap"]["throttle"];
        assert_eq!(t["perClient"]["failures"], d::THROTTLE_PER_CLIENT_FAILURES);
        assert_eq!(t["perUser"]["failures"], d::THROTTLE_PER_USER_FAILURES);
        assert_eq!(dur(&t["perClient"]["window"]), d::THROTTLE_WINDOW);
        assert_eq!(dur(&t["perUser"]["window"]), d::THROTTLE_WINDOW);

        let mut p = json!({});
        apply_defaults(&spec_schema::<LdapProfile>(), &mut p);
        assert_eq!(
            p["mailAttributes"],
            json!(postern_config::sender::default_mail_attributes())
        );
    }

    #[test]
    fn a_value_given_is_kept() {
        let schema = spec_schema::<CrlSource>();
        let mut v = json!({"primaryUrl": "http://x/c.crl", "failurePolicy": "Open"});
        apply_defaults(&schema, &mut v);
        assert_eq!(v["failurePolicy"], "Open");
        assert_eq!(v["format"], "Asn1");
        assert_eq!(v["maxSize"], "512Mi");
        assert_eq!(v["schedule"]["interval"], "1h");
    }
}
