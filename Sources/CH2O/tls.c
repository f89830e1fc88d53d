/* OpenSSL contexts for servers (optionally mutual TLS, with CRL) and clients (optionally with a certificate). */
#include <string.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include "internal.h"

#define CH2O_TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256"
#define CH2O_TLS12_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"

static void openssl_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    ch2o_copy_err(err, errlen, "%s%s%s: %s", what, path ? " " : "", path ? path : "", buf[0] ? buf : "failed");
}

static int password_cb(char *buf, int size, int rwflag, void *userdata)
{
    const char *pw = userdata;
    if (pw == NULL)
        return 0;
    size_t len = strlen(pw);
    if ((int)len > size)
        len = size;
    memcpy(buf, pw, len);
    return (int)len;
}

static int common_setup(SSL_CTX *ctx, const ch2o_tls_config_t *cfg, int is_server, char *err, size_t errlen)
{
    SSL_CTX_set_min_proto_version(ctx, cfg->min_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_ciphersuites(ctx, CH2O_TLS13_SUITES);
    SSL_CTX_set_cipher_list(ctx, CH2O_TLS12_CIPHERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (cfg->key_password != NULL) {
        SSL_CTX_set_default_passwd_cb(ctx, password_cb);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)strdup(cfg->key_password));
    }
    if (cfg->cert_file != NULL && cfg->cert_file[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
            openssl_err(err, errlen, "cannot load certificate", cfg->cert_file);
            return -1;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            openssl_err(err, errlen, "cannot load private key", cfg->key_file);
            return -1;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            openssl_err(err, errlen, "private key does not match certificate", cfg->key_file);
            return -1;
        }
    } else if (is_server) {
        ch2o_copy_err(err, errlen, "a TLS listener needs a certificate and a private key");
        return -1;
    }
    if (cfg->ca_file != NULL && cfg->ca_file[0]) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
            openssl_err(err, errlen, "cannot load CA file", cfg->ca_file);
            return -1;
        }
        if (is_server)
            SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(cfg->ca_file));
    }
    if (cfg->crl_file != NULL && cfg->crl_file[0]) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
        if (lookup == NULL || X509_load_crl_file(lookup, cfg->crl_file, X509_FILETYPE_PEM) <= 0) {
            openssl_err(err, errlen, "cannot load CRL", cfg->crl_file);
            return -1;
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    if (cfg->verify_peer) {
        int mode = SSL_VERIFY_PEER;
        if (is_server)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
    }
    return 0;
}

SSL_CTX *ch2o_ssl_server_ctx(const ch2o_tls_config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        openssl_err(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    if (common_setup(ctx, cfg, 1, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ch2o", 4);
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

SSL_CTX *ch2o_ssl_client_ctx(const ch2o_tls_config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        openssl_err(err, errlen, "SSL_CTX_new", NULL);
        return NULL;
    }
    if (common_setup(ctx, cfg, 0, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct ch2o_tls_client {
    SSL_CTX *ctx;
    _Atomic int refs;
};

ch2o_tls_client_t *ch2o_tls_client_create(const ch2o_tls_config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = ch2o_ssl_client_ctx(cfg, err, errlen);
    if (ctx == NULL)
        return NULL;
    ch2o_tls_client_t *t = calloc(1, sizeof(*t));
    t->ctx = ctx;
    t->refs = 1;
    return t;
}

SSL_CTX *ch2o_tls_client_ssl_ctx(ch2o_tls_client_t *tls) { return tls ? tls->ctx : NULL; }

void ch2o_tls_client_retain(ch2o_tls_client_t *tls)
{
    if (tls != NULL)
        atomic_fetch_add(&tls->refs, 1);
}

void ch2o_tls_client_release(ch2o_tls_client_t *tls)
{
    if (tls != NULL && atomic_fetch_sub(&tls->refs, 1) == 1) {
        SSL_CTX_free(tls->ctx);
        free(tls);
    }
}
