#!/usr/bin/env bash
# Generate the example PKI and the Secret manifests of the three example scenarios.
#
#   examples/gen-certs.sh [OUTDIR]      (default: the examples directory itself)
#
# Writes OUTDIR/pki/:
#   ca.crt ca.key            "Postern Example CA" (trust anchor for client certificates)
#   server.crt server.key    mail.example.org, localhost, 127.0.0.1 (the listeners' certificate)
#   alice.crt alice.key      CAC-style client certificate: CN=ANDERSON.ALICE.A.1000000001,
#                            serial 1A2B3C4D5E6F7081 (matches alice's caccn/cacserial in
#                            ldap/users.ldif, so the certificate query maps it to uid alice)
#   grace.crt grace.key      CN=Grace Hopper (the AD-style user ghopper)
#   mallory.crt mallory.key  valid certificate of the same CA, but no directory entry
#   revoked.crt revoked.key  certificate of the same CA that ca.crl revokes
#   ca.crl ca.crl.pem        the CA's CRL (DER and PEM), listing `revoked`
# and OUTDIR/{certificate-only,ldap-auth,either}/secrets.yaml with the Secrets each
# scenario references (gateway-tls, cac-roots, ldap-bind).
#
# Needs only openssl. Certificates are valid for 10 years; keys are EC P-256 (PKCS#8).
# Everything here is for local testing: never use these keys for real mail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
pki="$out/pki"
mkdir -p "$pki"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=3650

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# CA
key "$pki/ca.key"
openssl req -x509 -new -key "$pki/ca.key" -subj "/O=Example/CN=Postern Example CA" \
  -days "$days" -set_serial 0x01 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" -out "$pki/ca.crt"

# leaf NAME SUBJECT SERIAL EXTENSIONS...
leaf() {
  local name=$1 subject=$2 serial=$3
  shift 3
  key "$pki/$name.key"
  {
    echo "[v3]"
    echo "basicConstraints = critical, CA:FALSE"
    echo "authorityKeyIdentifier = keyid"
    for line in "$@"; do echo "$line"; done
  } > "$tmp/$name.cnf"
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$tmp/$name.csr" 2>/dev/null
  openssl x509 -req -in "$tmp/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -set_serial "$serial" -days "$days" -extfile "$tmp/$name.cnf" -extensions v3 \
    -out "$pki/$name.crt" 2>/dev/null
}

leaf server "/O=Example/CN=mail.example.org" 0x5E4E4E0001 \
  "keyUsage = critical, digitalSignature" "extendedKeyUsage = serverAuth" \
  "subjectAltName = DNS:mail.example.org, DNS:localhost, IP:127.0.0.1"
leaf alice "/O=Example/OU=People/CN=ANDERSON.ALICE.A.1000000001" 0x1A2B3C4D5E6F7081 \
  "keyUsage = critical, digitalSignature" "extendedKeyUsage = clientAuth" \
  "subjectAltName = email:alice@example.org"
leaf grace "/O=Example/OU=People/CN=Grace Hopper" 0x67726163650001 \
  "keyUsage = critical, digitalSignature" "extendedKeyUsage = clientAuth" \
  "subjectAltName = email:grace@example.org"
leaf mallory "/O=Example/OU=People/CN=MALLORY.MALLORY.M.1000000099" 0x6D616C6C6F72 \
  "keyUsage = critical, digitalSignature" "extendedKeyUsage = clientAuth"

leaf revoked "/O=Example/OU=People/CN=REVOKED.ROBERT.R.1000000098" 0x7265766F6B6564 \
  "keyUsage = critical, digitalSignature" "extendedKeyUsage = clientAuth"

# A CRL of the CA listing `revoked` (DER ca.crl and PEM ca.crl.pem), valid 10 years.
touch "$tmp/index.txt"
cat > "$tmp/ca-db.cnf" <<CNF
[ca]
default_ca = db
[db]
database = $tmp/index.txt
crlnumber = $tmp/crlnumber
default_md = sha256
default_crl_days = $days
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
CNF
echo 01 > "$tmp/crlnumber"
openssl ca -config "$tmp/ca-db.cnf" -keyfile "$pki/ca.key" -cert "$pki/ca.crt" \
  -revoke "$pki/revoked.crt" -crl_reason keyCompromise 2>/dev/null
openssl ca -config "$tmp/ca-db.cnf" -keyfile "$pki/ca.key" -cert "$pki/ca.crt" \
  -gencrl -out "$pki/ca.crl.pem" 2>/dev/null
openssl crl -in "$pki/ca.crl.pem" -outform DER -out "$pki/ca.crl"

indent() { sed 's/^/    /' "$1"; }

tls_secret() {
  cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: gateway-tls
  # Postern uses a Secret only for what its label says (docs/rbac.md): serving TLS.
  labels: {postern.dev/secret-use: tls}
type: kubernetes.io/tls
stringData:
  tls.crt: |
$(indent "$pki/server.crt")
  tls.key: |
$(indent "$pki/server.key")
YAML
}

ca_secret() {
  cat <<YAML
---
# Trust anchors for client certificates (the "CAC roots"): Listener spec.tls.clientCaSecretRef.
apiVersion: v1
kind: Secret
metadata:
  name: cac-roots
  labels: {postern.dev/secret-use: ca}
type: Opaque
stringData:
  ca.crt: |
$(indent "$pki/ca.crt")
YAML
}

bind_secret() {
  cat <<'YAML'
---
# The LDAP search account's password (see examples/ldap/users.ldif).
apiVersion: v1
kind: Secret
metadata:
  name: ldap-bind
  # Only a Secret labelled ldap-bind is ever sent to an LDAP server as a bind password.
  labels: {postern.dev/secret-use: ldap-bind}
type: Opaque
stringData:
  password: postern-bind-pw
YAML
}

header="# Generated by examples/gen-certs.sh: test material only, never for real mail."
for scenario in certificate-only ldap-auth either; do
  mkdir -p "$out/$scenario"
  {
    echo "$header"
    echo "# The listener's server certificate and key."
    tls_secret
    if [ "$scenario" != ldap-auth ]; then ca_secret; fi
    bind_secret
  } > "$out/$scenario/secrets.yaml"
done
echo "gen-certs: wrote $pki and the secrets.yaml of each scenario under $out" >&2
