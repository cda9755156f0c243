#!/usr/bin/env bash
# Start a throwaway OpenLDAP slapd with the example schema and users, for running the
# example manifests locally. Usage: examples/ldap/run-slapd.sh [PORT [ADDRESS]]
# (default 3389 on 127.0.0.1; the node tests bind the cluster node's address instead)
# Stops with Ctrl-C (the database lives in a temporary directory that is removed).
# Needs Debian's slapd (apt-get install slapd ldap-utils); nothing else is touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${1:-3389}
addr=${2:-127.0.0.1}
command -v slapd >/dev/null || PATH=$PATH:/usr/sbin
command -v slapd >/dev/null || { echo "run-slapd: slapd not found (apt-get install slapd ldap-utils)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'kill "$(cat "$dir/slapd.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$dir"' EXIT
trap 'exit 143' TERM INT   # so that the EXIT trap stops slapd
mkdir "$dir/db"
cat > "$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include $here/cac.schema
pidfile $dir/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw admin-pw
directory $dir/db
maxsize 104857600
access to attrs=userPassword by anonymous auth by self read by * none
access to * by * read
CONF
slapadd -q -f "$dir/slapd.conf" -l "$here/users.ldif"
slapd -f "$dir/slapd.conf" -h "ldap://$addr:$port/"
echo "run-slapd: ldap://$addr:$port/ (base dc=example,dc=org; bind cn=postern,ou=services,dc=example,dc=org / postern-bind-pw); Ctrl-C stops it" >&2
while kill -0 "$(cat "$dir/slapd.pid" 2>/dev/null)" 2>/dev/null; do sleep 1; done
