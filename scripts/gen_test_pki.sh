#!/usr/bin/env bash
# Makes a throwaway PKI for TLS mode and tests: a CA, a server certificate for localhost/127.0.0.1,
# a client certificate, an empty CRL and an (empty) key password file. NOT for production use.
#   usage: scripts/gen_test_pki.sh OUT_DIR [--revoke-client]
# Every file it writes is mode 0400: the binaries accept TLS material (CA, certificates, CRL, keys, password
# files) only when it is readable by its owner alone (README, "Configuration").
set -euo pipefail
out=${1:?usage: gen_test_pki.sh OUT_DIR [--revoke-client]}
revoke=${2:-}
mkdir -p "$out"
cd "$out"
umask 077
# a second run overwrites: the old files are read-only
rm -f ./*.pem ./*.csr ./*.srl key_pwd.txt index.txt* serial* openssl.cnf
cat > openssl.cnf <<'CNF'
[ca]
default_ca = testca
[testca]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
default_days = 365
default_crl_days = 30
policy = anything
[anything]
commonName = supplied
[server_ext]
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage = serverAuth,clientAuth
[client_ext]
extendedKeyUsage = clientAuth
CNF
: > index.txt
echo 1000 > serial
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key.pem -out ca.pem \
  -subj "/CN=mindie-ms test CA" -days 365 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$who.key.pem" -out "$who.csr" \
    -subj "/CN=mindie-ms-$who" 2>/dev/null
  openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key.pem -CAcreateserial -out "$who.pem" -days 365 \
    -extfile openssl.cnf -extensions "${who}_ext" 2>/dev/null
done
if [ "$revoke" = "--revoke-client" ]; then
  openssl ca -config openssl.cnf -keyfile ca.key.pem -cert ca.pem -revoke client.pem 2>/dev/null
fi
openssl ca -config openssl.cnf -keyfile ca.key.pem -cert ca.pem -gencrl -out crl.pem 2>/dev/null
# The keys are not encrypted, so there is no password; the configs' tls_passwd still names a file (the
# reference's layout, and the Coordinator requires it), so an empty one is made for them.
: > key_pwd.txt
chmod 0400 ./*.pem key_pwd.txt
echo "test PKI in $PWD: ca.pem server.pem server.key.pem client.pem client.key.pem crl.pem key_pwd.txt"
