/* Flotilla reference OTA client: the portable C99 core.
 *
 * Speaks the native protocol of docs/device-api.md (check-in, enrolment and bearer secret,
 * signed offers, reports, downloads with Range). Everything platform-specific goes through
 * fl_port: HTTP, flash, clock, persistent key-value storage, SHA-256, Ed25519, base64 and
 * (optionally) MQTT. The core never writes a byte to flash before the offer's Ed25519
 * signature, chip, model and version rules have passed, and never commits an image whose
 * SHA-256 differs from the signed manifest's.
 */
#ifndef FLOTILLA_OTA_H
#define FLOTILLA_OTA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_PUBKEY_LEN 32
#define FL_SIG_LEN 64
#define FL_SHA256_LEN 32
#define FL_SECRET_MAX 96
#define FL_JOB_MAX 96
#define FL_URL_MAX 512
#define FL_VERSION_MAX 32
#define FL_ID_MAX 64
#define FL_SERVER_MAX 64 /* a discovered server: "https://255.255.255.255:65535" */

/* mDNS service discovery (RFC 6763) of the device server: `_flotilla._tcp`. */
#define FL_MDNS_SERVICE "_flotilla"
#define FL_MDNS_PROTO "_tcp"
#define FL_MDNS_TXT_CAP 256 /* TXT strings kept per instance */
#define FL_MDNS_MAX 4       /* instances considered per query */

/* One instance of a service found by mDNS, as the port's query fills it: the IPv4 address of
 * the SRV target, the SRV port and the TXT strings as "key=value" pairs, each NUL-terminated,
 * one after another (fl_mdns_add_txt appends; an empty key ends the list). */
typedef struct {
    char addr[16]; /* dotted quad */
    uint16_t port;
    uint16_t txt_len;
    char txt[FL_MDNS_TXT_CAP];
} fl_mdns_service;

/* Opaque, aligned storage for the port's SHA-256 state (libsodium, mbedTLS: ~110 bytes). */
typedef union {
    uint64_t align;
    unsigned char bytes[256];
} fl_sha256_state;

/* Receives a downloaded chunk; returns 0 to continue, non-zero to abort the transfer. */
typedef int (*fl_sink_fn)(void *sink_ctx, const uint8_t *data, size_t len);

/* The platform. Functions return 0 on success unless stated otherwise. */
typedef struct fl_port {
    void *ctx; /* passed to every function */

    /* POST `body` (JSON) to `url`; `bearer` is NULL or the secret for "Authorization: Bearer".
     * Writes at most resp_cap-1 bytes of the answer, NUL-terminated, and the HTTP status.
     * Returns non-zero on a transport error (no status). TLS pinning is the port's: see
     * fl_config.tls_pin. */
    int (*http_post_json)(void *ctx, const char *url, const char *bearer, const char *body, char *resp,
                          size_t resp_cap, int *status);
    /* GET `url` from byte `offset` ("Range: bytes=<offset>-" when offset > 0), streaming the body
     * to `sink`. Sets *status before the sink first sees data (200 for a Range request means
     * the server sent the whole file: the core starts over). Returns non-zero when the transfer broke off (the sink has
     * then seen a prefix) or the sink aborted. The body of another status may be dropped (the core never writes it):
     * 5xx, 408 and 429 are retried, any other fails the download. */
    int (*http_get)(void *ctx, const char *url, const char *bearer, uint64_t offset, fl_sink_fn sink,
                    void *sink_ctx, int *status);

    /* Flash: the inactive OTA slot. begin(size) prepares (erases) it; write at an offset;
     * read back (optional, NULL: no resume across a reboot); commit marks it to boot next
     * (pending verify); abort discards it. */
    int (*flash_begin)(void *ctx, uint64_t size, int resume);
    int (*flash_write)(void *ctx, uint64_t offset, const uint8_t *data, size_t len);
    int (*flash_read)(void *ctx, uint64_t offset, uint8_t *data, size_t len);
    int (*flash_commit)(void *ctx, const char *version);
    void (*flash_abort)(void *ctx);
    /* After the reboot: keep (valid=1) or roll back (valid=0) the running image. Optional. */
    int (*flash_confirm)(void *ctx, int valid);

    uint64_t (*now_ms)(void *ctx);
    void (*sleep_ms)(void *ctx, uint32_t ms);

    /* Persistent key-value storage (NVS). get returns the value's length, or -1 if absent or
     * longer than cap-1. set with value NULL erases the key. */
    int (*kv_get)(void *ctx, const char *key, char *buf, size_t cap);
    int (*kv_set)(void *ctx, const char *key, const char *value);

    /* Libraries, not our own crypto. */
    int (*sha256_init)(void *ctx, fl_sha256_state *st);
    int (*sha256_update)(void *ctx, fl_sha256_state *st, const uint8_t *data, size_t len);
    int (*sha256_final)(void *ctx, fl_sha256_state *st, uint8_t out[FL_SHA256_LEN]);
    /* 0 if `sig` is a valid Ed25519 signature of msg under pk. */
    int (*ed25519_verify)(void *ctx, const uint8_t sig[FL_SIG_LEN], const uint8_t *msg, size_t len,
                          const uint8_t pk[FL_PUBKEY_LEN]);
    /* Standard base64 (with padding) to bytes; returns the decoded length or -1. */
    int (*base64_decode)(void *ctx, const char *in, uint8_t *out, size_t cap);

    /* Optional MQTT (NULL: reports go over HTTP). */
    int (*mqtt_publish)(void *ctx, const char *topic, const char *payload, int retain);

    /* Optional service discovery (NULL: the server must be configured). One mDNS query for
     * `service`.`proto`.local (PTR, then the instances' SRV, TXT and A records), waiting at
     * most timeout_ms; fills at most `max` instances that have an IPv4 address and a port.
     * Returns how many (0: none). What it fills is untrusted: the core picks among them. */
    int (*mdns_query)(void *ctx, const char *service, const char *proto, uint32_t timeout_ms, fl_mdns_service *out,
                      int max);
} fl_port;

/* http_get's return value when the TLS layer refused the server (its key or certificate is not
 * the pinned one): not a dropped connection, so the download is not retried. */
#define FL_HTTP_TLS_REFUSED (-2)

typedef struct fl_config {
    const char *server;      /* "http://host:port" or "https://…" (no trailing slash); NULL: found
                                by mDNS (needs port->mdns_query). A check-in over https:// says
                                "tls": true, so offers name the firmware by https:// too. */
    const char *device_id;
    const char *mac;         /* "24:6F:28:AA:BB:CC" */
    const char *model;
    const char *chip;        /* "esp32", "esp32s3", … */
    const char *version;     /* read from the running image */
    uint32_t secure_version; /* the running app's anti-rollback version */
    uint32_t interval_secs;  /* declared check-in interval (0: not sent) */
    uint8_t pubkey[FL_PUBKEY_LEN]; /* the site key (flotilla keys export), compiled in */
    uint64_t slot_size;      /* bytes available in the OTA slot */
    int allow_downgrade;     /* accept an older version (the manifest may also say so) */
    int allow_reenrol;       /* take a new credential in place of the one held (a re-key) */
    uint32_t progress_interval_ms; /* at most one `downloading` report per this (0: 2000) */
    uint32_t max_retries;    /* download attempts after a dropped connection (0: 5) */
    const char *tls_pin;     /* the pinned server key or certificate the port checks ("sha256//<base64
                                of the SPKI SHA-256>" or a PEM), NULL: none. With mDNS: set, only
                                HTTPS servers are taken, and a "sha256//" pin must equal the TXT
                                `fps`; unset, plain HTTP. A fingerprint from mDNS never pins. */
    uint32_t mdns_timeout_ms; /* how long one discovery waits (0: 3000) */
    int report_via_mqtt;     /* 1: reports on flotilla/<id>/status/ota through mqtt_publish */
} fl_config;

typedef enum {
    FL_OK_NO_UPDATE = 0,
    FL_OK_REBOOT = 1,    /* an image was written and committed: reboot into it */
    FL_OK_IGNORED = 2,   /* a job already handled */
    FL_PENDING_APPROVAL = 3,
    FL_REJECTED = -1,    /* the offer failed verification; reported `rejected` */
    FL_FAILED = -2,      /* download/flash failed; reported `failed` */
    FL_ERR_NETWORK = -3, /* the check-in itself failed */
    FL_ERR_UNAUTHORIZED = -4,
    FL_ERR_ARG = -5
} fl_result;

/* Fixed list of `error` reasons in `failed`/`rejected` reports. */
typedef enum {
    FL_E_NONE = 0,
    FL_E_BAD_OFFER,
    FL_E_BAD_SIGNATURE,
    FL_E_WRONG_CHIP,
    FL_E_WRONG_MODEL,
    FL_E_NOT_NEWER,
    FL_E_SECURE_VERSION,
    FL_E_MIN_VERSION,
    FL_E_TOO_LARGE,
    FL_E_DOWNLOAD,
    FL_E_SIZE_MISMATCH,
    FL_E_SHA256_MISMATCH,
    FL_E_FLASH,
    FL_E_ROLLBACK,
    FL_E_TLS
} fl_error;

const char *fl_error_str(fl_error e);

/* A verified offer (from the signed manifest, plus the unsigned job and url). */
typedef struct {
    char job[FL_JOB_MAX];
    char url[FL_URL_MAX];
    char version[FL_VERSION_MAX];
    uint64_t size;
    char sha256[65];
    uint32_t secure_version;
} fl_offer;

typedef struct fl_client {
    fl_config cfg;
    const fl_port *port;
    char secret[FL_SECRET_MAX];
    uint64_t last_progress_ms;
    int last_progress;
    /* download state */
    fl_sha256_state sha;
    uint64_t offset;
    uint64_t size;
    int sink_error;
    const fl_offer *cur;
    uint64_t persisted_offset;
    int http_status;
    int range_check;
    /* the server found by mDNS (cfg.server points here while it is known) */
    char found[FL_SERVER_MAX];
    /* consecutive check-ins that failed (network) or were refused (401), for the backoff */
    uint32_t failures;
    int refused;          /* the last check-in was refused: no reports until one passes */
    uint32_t credentials; /* credentials received since fl_init (a port re-logs in to MQTT) */
} fl_client;

/* ---- pure helpers (tested on their own) ---- */

/* SemVer 2.0 precedence of a and b: <0, 0, >0; *ok=0 if either does not parse. */
int fl_semver_cmp(const char *a, const char *b, int *ok);

/* Parses and verifies an offer (a check-in answer or an MQTT cmd/ota payload) against the
 * config: signature, chip, model, version rules, slot size. Nothing is written. */
fl_error fl_verify_offer(const fl_config *cfg, const fl_port *port, const char *json, size_t len, fl_offer *out);

/* Report bodies. HTTP: {"device_id":…,"mac":…,"job":…,"state":…[,"progress":N][,"error":…]};
 * MQTT status/ota: {"job":…,"state":…[,"progress":N][,"error":…]}. progress < 0: omitted;
 * error NULL: omitted. Return the length, or -1 if cap is too small. */
int fl_report_json(char *buf, size_t cap, const char *device_id, const char *mac, const char *job, const char *state,
                   int progress, const char *error);
int fl_status_json(char *buf, size_t cap, const char *job, const char *state, int progress, const char *error);
/* Check-in body and retained presence. */
int fl_checkin_json(char *buf, size_t cap, const fl_config *cfg);
int fl_presence_json(char *buf, size_t cap, const fl_config *cfg, const char *ip);

/* Appends "key=value" to s's TXT strings (ports use it); 0, or -1 if it does not fit or the key
 * is empty or holds '='. */
int fl_mdns_add_txt(fl_mdns_service *s, const char *key, size_t key_len, const char *value, size_t value_len);
/* The value of `key` in s's TXT strings, or NULL. */
const char *fl_mdns_txt(const fl_mdns_service *s, const char *key);
/* Picks the server among `n` discovered instances (see fl_config.server and tls_pin): the first
 * whose `api` is "/api/v1", whose `fp` is the id of the compiled-in site key, and, with a pin,
 * that offers HTTPS (`tls`) and, for a "sha256//" pin, whose `fps` is the pinned key. Writes its
 * URL ("https://addr:tls" or "http://addr:port"); returns its index, or -1 if none fits. */
int fl_mdns_pick(const fl_config *cfg, const fl_port *port, const fl_mdns_service *found, int n, char *url,
                 size_t cap);

/* ---- the client ---- */

int fl_init(fl_client *c, const fl_config *cfg, const fl_port *port);
/* Finishes a download a reboot interrupted (its offer is kept in storage and verified again),
 * else checks in (enrolling first if there is no secret), and handles an offer to the end. */
fl_result fl_check_in(fl_client *c);
/* Milliseconds until the next check-in after one that returned r: the interval (interval_secs,
 * default 600 s) with +-20 % jitter from `random` (any 32-bit random number); after refusals or
 * network failures, doubled per consecutive one up to 8 times the interval. */
uint32_t fl_next_check_in_ms(const fl_client *c, uint32_t random);
/* Finds the server by mDNS now (fl_check_in does it when none is known). 0 if one was found. */
int fl_discover(fl_client *c);
/* Handles an offer received another way (MQTT push). */
fl_result fl_handle_offer(fl_client *c, const char *json, size_t len);
/* Call once after boot: confirms (health_ok) or rolls back an image pending verification and
 * reports a rollback. Returns 1 if an update was just confirmed, 0 if nothing was pending, -1
 * if it was rolled back. */
int fl_after_boot(fl_client *c, int health_ok);
/* Sends one report (HTTP, or MQTT when configured). */
int fl_report(fl_client *c, const char *job, const char *state, int progress, const char *error);

/* The KV keys the core uses. */
#define FL_KV_SECRET "fl_secret"
#define FL_KV_GEN "fl_gen"
#define FL_KV_MQTT_USER "fl_mqtt_user"
#define FL_KV_MQTT_PASS "fl_mqtt_pass"
#define FL_KV_DL_JOB "fl_dl_job"
#define FL_KV_DL_OFF "fl_dl_off"
#define FL_KV_DL_OFFER "fl_dl_offer"
#define FL_KV_DONE_JOB "fl_done_job"
#define FL_KV_PENDING_JOB "fl_pend_job"
#define FL_KV_PENDING_VER "fl_pend_ver"

#ifdef __cplusplus
}
#endif
#endif
