/* The POSIX port: see posix_port.h. */
#include "posix_port.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef char sha_state_fits[sizeof(crypto_hash_sha256_state) <= sizeof(fl_sha256_state) ? 1 : -1];

static int path_of(const posix_port *pp, const char *name, char *out, size_t cap) {
    int n = snprintf(out, cap, "%s/%s", pp->dir, name);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int posix_read_file(const posix_port *pp, const char *name, char *buf, size_t cap) {
    char path[700];
    FILE *f;
    size_t n;
    if (path_of(pp, name, path, sizeof path) || !(f = fopen(path, "rb"))) return 0;
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return 1;
}

int posix_write_file(const posix_port *pp, const char *name, const char *value) {
    char path[700], tmp[710];
    FILE *f;
    int ok;
    if (path_of(pp, name, path, sizeof path)) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) return -1;
    ok = fputs(value, f) >= 0;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) return -1;
    return 0;
}

void posix_remove_file(const posix_port *pp, const char *name) {
    char path[700];
    if (!path_of(pp, name, path, sizeof path)) unlink(path);
}

/* ---- HTTP (libcurl) ---- */

typedef struct {
    char *buf;
    size_t cap, len;
} membuf;

static size_t collect(char *data, size_t size, size_t n, void *ud) {
    membuf *m = ud;
    size_t len = size * n, room = m->cap - 1 - m->len;
    if (len > room) len = room; /* truncated: the core then fails to parse it */
    memcpy(m->buf + m->len, data, len);
    m->len += len;
    m->buf[m->len] = '\0';
    return size * n;
}

static CURL *easy(posix_port *pp, const char *url, struct curl_slist **hdrs, const char *bearer) {
    CURL *c = curl_easy_init();
    char auth[160];
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, pp->timeout_s);
    if (pp->tls_pin) curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, pp->tls_pin);
    if (pp->cacert) curl_easy_setopt(c, CURLOPT_CAINFO, pp->cacert);
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        *hdrs = curl_slist_append(*hdrs, auth);
    }
    return c;
}

static int post_json(void *ctx, const char *url, const char *bearer, const char *body, char *resp, size_t cap,
                     int *status) {
    posix_port *pp = ctx;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    membuf m = {resp, cap, 0};
    CURL *c = easy(pp, url, &h, bearer);
    CURLcode rc;
    long code = 0;
    resp[0] = '\0';
    if (!c) {
        curl_slist_free_all(h);
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, pp->timeout_s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        fprintf(stderr, "flotilla-ota-host: POST %s: %s\n", url, curl_easy_strerror(rc));
        return -1;
    }
    *status = (int)code;
    return 0;
}

static size_t to_sink(char *data, size_t size, size_t n, void *ud) {
    posix_port *pp = ud;
    long code = 0;
    curl_easy_getinfo(pp->curl, CURLINFO_RESPONSE_CODE, &code);
    *pp->status = (int)code;
    if (code != 200 && code != 206) return size * n; /* an error body is not firmware */
    if (pp->sink(pp->sink_ctx, (const uint8_t *)data, size * n)) return 0; /* abort */
    pp->got += size * n;
    return size * n;
}

static int http_get(void *ctx, const char *url, const char *bearer, uint64_t offset, fl_sink_fn sink, void *sctx,
                    int *status) {
    posix_port *pp = ctx;
    struct curl_slist *h = NULL;
    CURL *c = easy(pp, url, &h, bearer);
    CURLcode rc;
    long code = 0;
    char range[32];
    if (!c) return -1;
    /* which server, by which scheme (not the query: it holds the job's download token) */
    fprintf(stderr, "flotilla-ota-host: GET %.*s from byte %llu\n", (int)strcspn(url, "?"), url,
            (unsigned long long)offset);
    if (offset) {
        snprintf(range, sizeof range, "%llu-", (unsigned long long)offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    pp->got = 0;
    pp->sink = sink;
    pp->sink_ctx = sctx;
    pp->status = status;
    pp->curl = c;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, pp);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    pp->curl = NULL;
    *status = (int)code;
    if (rc != CURLE_OK) {
        fprintf(stderr, "flotilla-ota-host: GET from byte %llu: %s after %llu bytes\n", (unsigned long long)offset,
                curl_easy_strerror(rc), (unsigned long long)pp->got);
        /* the server is not the pinned (or a trusted) one: the core does not retry */
        if (rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH || rc == CURLE_PEER_FAILED_VERIFICATION) return FL_HTTP_TLS_REFUSED;
        return -1;
    }
    return 0;
}

/* ---- "flash": the OTA slot is a file in the state directory ---- */

static int flash_begin(void *ctx, uint64_t size, int resume) {
    posix_port *pp = ctx;
    char path[700];
    int fd;
    (void)size;
    if (path_of(pp, "slot.bin", path, sizeof path)) return -1;
    fd = open(path, O_WRONLY | O_CREAT | (resume ? 0 : O_TRUNC), 0600);
    if (fd < 0) return -1;
    return close(fd);
}

static int flash_write(void *ctx, uint64_t off, const uint8_t *d, size_t n) {
    posix_port *pp = ctx;
    char path[700];
    int fd, ok;
    if (path_of(pp, "slot.bin", path, sizeof path) || (fd = open(path, O_WRONLY)) < 0) return -1;
    ok = pwrite(fd, d, n, (off_t)off) == (ssize_t)n;
    ok = (fdatasync(fd) == 0) && ok; /* the offset persisted later must not run ahead of the data */
    close(fd);
    return ok ? 0 : -1;
}

static int flash_read(void *ctx, uint64_t off, uint8_t *d, size_t n) {
    posix_port *pp = ctx;
    char path[700];
    int fd, ok;
    if (path_of(pp, "slot.bin", path, sizeof path) || (fd = open(path, O_RDONLY)) < 0) return -1;
    ok = pread(fd, d, n, (off_t)off) == (ssize_t)n;
    close(fd);
    return ok ? 0 : -1;
}

static int flash_commit(void *ctx, const char *version) {
    posix_port *pp = ctx;
    char from[700], to[700], name[64];
    snprintf(name, sizeof name, "app-%s.bin", version);
    if (path_of(pp, "slot.bin", from, sizeof from) || path_of(pp, name, to, sizeof to) || rename(from, to) != 0)
        return -1;
    return posix_write_file(pp, "pending-version", version);
}

static void flash_abort(void *ctx) {
    posix_remove_file(ctx, "slot.bin");
}

static int flash_confirm(void *ctx, int valid) {
    posix_port *pp = ctx;
    char v[64];
    if (!posix_read_file(pp, "pending-version", v, sizeof v)) return 0;
    if (valid && posix_write_file(pp, "running-version", v) != 0) return -1;
    posix_remove_file(pp, "pending-version");
    return 0;
}

/* ---- clock, KV ---- */

static uint64_t now_ms(void *ctx) {
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(void *ctx, uint32_t ms) {
    struct timespec ts;
    (void)ctx;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int kv_get(void *ctx, const char *key, char *buf, size_t cap) {
    char name[80];
    snprintf(name, sizeof name, "kv/%s", key);
    if (!posix_read_file(ctx, name, buf, cap)) return -1;
    return (int)strlen(buf);
}

static int kv_set(void *ctx, const char *key, const char *value) {
    char name[80];
    snprintf(name, sizeof name, "kv/%s", key);
    if (!value) {
        posix_remove_file(ctx, name);
        return 0;
    }
    return posix_write_file(ctx, name, value);
}

/* ---- libsodium ---- */

static int sha_init(void *ctx, fl_sha256_state *st) {
    (void)ctx;
    return crypto_hash_sha256_init((crypto_hash_sha256_state *)(void *)st->bytes);
}
static int sha_update(void *ctx, fl_sha256_state *st, const uint8_t *d, size_t n) {
    (void)ctx;
    return crypto_hash_sha256_update((crypto_hash_sha256_state *)(void *)st->bytes, d, n);
}
static int sha_final(void *ctx, fl_sha256_state *st, uint8_t out[FL_SHA256_LEN]) {
    (void)ctx;
    return crypto_hash_sha256_final((crypto_hash_sha256_state *)(void *)st->bytes, out);
}
static int ed_verify(void *ctx, const uint8_t sig[FL_SIG_LEN], const uint8_t *m, size_t n,
                     const uint8_t pk[FL_PUBKEY_LEN]) {
    (void)ctx;
    return crypto_sign_verify_detached(sig, m, n, pk);
}
static int b64_decode(void *ctx, const char *in, uint8_t *out, size_t cap) {
    size_t len = 0;
    (void)ctx;
    if (sodium_base642bin(out, cap, in, strlen(in), NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) return -1;
    return (int)len;
}

int posix_port_init(posix_port *pp, fl_port *port, const char *dir) {
    char kv[700];
    if (strlen(dir) >= sizeof pp->dir) return -1;
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return -1;
    strcpy(pp->dir, dir);
    if (!pp->timeout_s) pp->timeout_s = 30;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
    if (path_of(pp, "kv", kv, sizeof kv) || (mkdir(kv, 0700) != 0 && errno != EEXIST)) return -1;
    memset(port, 0, sizeof *port);
    port->ctx = pp;
    port->http_post_json = post_json;
    port->http_get = http_get;
    port->flash_begin = flash_begin;
    port->flash_write = flash_write;
    port->flash_read = flash_read;
    port->flash_commit = flash_commit;
    port->flash_abort = flash_abort;
    port->flash_confirm = flash_confirm;
    port->now_ms = now_ms;
    port->sleep_ms = sleep_ms;
    port->kv_get = kv_get;
    port->kv_set = kv_set;
    port->sha256_init = sha_init;
    port->sha256_update = sha_update;
    port->sha256_final = sha_final;
    port->ed25519_verify = ed_verify;
    port->base64_decode = b64_decode;
    return 0;
}
