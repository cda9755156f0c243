//! The LDAP section's directory: the test kit's slapd holding `users` people plus the
//! bench user (whose `cn` is the client certificate's CN), searched by the kit's service
//! account, `cn` and `uid` indexed as a production directory would have them.

use std::fmt::Write as _;

use anyhow::Result;
use postern_testkit::slapd::{BASE_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd, SlapdOptions};

use crate::pki::CLIENT_CN;

/// The bench user: its `cn` is the client certificate's CN, its `uid` the AUTH user.
pub(crate) const USER: &str = "bench";
/// The bench user's password.
pub(crate) const PASSWORD: &str = "bench-secret";

fn ldif(users: usize) -> String {
    let mut l = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Bench\n\n\
         dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: postern\nuserPassword: {SERVICE_PASSWORD}\n\n\
         dn: uid={USER},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\ncn: {CLIENT_CN}\nsn: Client\nuid: {USER}\nuserPassword: {PASSWORD}\n\n"
    );
    for i in 0..users {
        let _ = write!(
            l,
            "dn: uid=user{i},ou=people,{BASE_DN}\nobjectClass: inetOrgPerson\ncn: BENCH.USER.{n}\nsn: User\nuid: user{i}\nuserPassword: secret-{i}\n\n",
            n = 2_000_000_000 + i
        );
    }
    l
}

/// Start slapd with `users` people and wait until it accepts connections.
pub(crate) fn start(users: usize) -> Result<Slapd> {
    Slapd::start(SlapdOptions {
        ldif: Some(ldif(users)),
        indexes: vec!["objectClass eq".into(), "cn,uid eq".into()],
        ..SlapdOptions::default()
    })
}
