#!/usr/bin/env bash
# Makes a throwaway PKI for TLS mode and tests: a CA, a server certificate for localhost/127.0.0.1,
# a client certificate, and an empty CRL. NOT for production use.
#   usage: scripts/gen_test_pki.sh OUT_DIR [--revoke-client]
set -euo pipefail
out=${1:?usage: gen_test_pki.sh OUT_DIR [--revoke-client]}
revoke=${2:-}
mkdir -p "$out"
cd "$out"
umask 077
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
chmod 0400 ./*.key.pem
chmod 0440 ca.pem server.pem client.pem crl.pem
echo "test PKI in $PWD: ca.pem server.pem server.key.pem client.pem client.key.pem crl.pem"
