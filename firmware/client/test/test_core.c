/* Host unit tests of the core: a scripted fake port with libsodium for the real crypto. */
#include "flotilla_ota.h"

#include <cJSON.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;
#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)
#define CHECK_STR(a, b)                                                                                                \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (strcmp((a), (b)) != 0) {                                                                                   \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: %s\n   got: %s\nwanted: %s\n", __FILE__, __LINE__, #a, (a), (b));                  \
        }                                                                                                              \
    } while (0)

/* ---------------- the fake port ---------------- */

#define IMG_MAX (200 * 1024)
#define LOG_MAX 64
#define KV_MAX 16

typedef struct {
    /* scripted check-in answers */
    int check_status[8];
    const char *check_body[8];
    int n_checks, check_i;
    char check_bearer[8][FL_SECRET_MAX];
    /* reports and MQTT publishes, as sent */
    char reports[LOG_MAX][400];
    int n_reports;
    char report_bearer[FL_SECRET_MAX];
    char topics[LOG_MAX][96];
    /* the served image */
    uint8_t img[IMG_MAX];
    size_t img_len;
    long cut_after[8]; /* per GET: break off after this many body bytes (<0: never) */
    int range_status;  /* answer a Range request with this status and the whole file (0: 206, the rest) */
    int get_status;    /* answer this instead, with no body (0: 200/206) */
    int status_at[8];  /* per GET: answer this instead (0: 200/206, or get_status) */
    int error_body;    /* with such a status, the sink sees ERROR_BODY (0: no body, as the ports drop it) */
    uint64_t get_offsets[32];
    int n_gets;
    char get_bearer[FL_SECRET_MAX];
    size_t chunk;
    /* flash */
    uint8_t flash[IMG_MAX];
    uint64_t flash_size;
    int begun, resume_flag, commits, aborts, confirmed;
    char committed[FL_VERSION_MAX];
    size_t writes_before_verify; /* bytes written at the time of the last report */
    size_t written;
    /* kv */
    char keys[KV_MAX][32], vals[KV_MAX][1024];
    int n_dl_off_sets;
    /* storage as it was when a GET first broke off: what a power cut then would have left */
    char cut_keys[KV_MAX][32], cut_vals[KV_MAX][1024];
    int cut_seen;
    /* clock, and each sleep asked for with the number of GETs made by then */
    uint64_t now, step;
    uint32_t sleeps[16];
    int sleep_gets[16], n_sleeps;
    /* TLS: GETs refused by the pin check */
    int get_tls_refused;
    /* the URL of every POST, in order */
    char post_urls[16][96];
    int n_posts;
    /* mDNS: what the query finds, and how often it was asked */
    fl_mdns_service mdns[FL_MDNS_MAX];
    int n_mdns, mdns_queries;
    char mdns_asked[40];
} fake;

static int fake_post(void *ctx, const char *url, const char *bearer, const char *body, char *resp, size_t cap,
                     int *status) {
    fake *f = ctx;
    const char *ans;
    if (f->n_posts < 16) snprintf(f->post_urls[f->n_posts++], 96, "%s", url);
    if (strstr(url, "/api/v1/check")) {
        if (f->check_i >= f->n_checks) return -1;
        snprintf(f->check_bearer[f->check_i], FL_SECRET_MAX, "%s", bearer ? bearer : "");
        *status = f->check_status[f->check_i];
        ans = f->check_body[f->check_i++];
    } else {
        if (f->n_reports < LOG_MAX) snprintf(f->reports[f->n_reports++], 400, "%s", body);
        snprintf(f->report_bearer, FL_SECRET_MAX, "%s", bearer ? bearer : "");
        *status = 200;
        ans = "{\"ok\":true}";
    }
    snprintf(resp, cap, "%s", ans);
    return 0;
}

static const char ERROR_BODY[] = "<html><body><h1>503 Service Unavailable</h1></body></html>";

static int fake_get(void *ctx, const char *url, const char *bearer, uint64_t offset, fl_sink_fn sink, void *sctx,
                    int *status) {
    fake *f = ctx;
    size_t pos, sent = 0, chunk = f->chunk ? f->chunk : 1000;
    long cut = f->n_gets < 8 ? f->cut_after[f->n_gets] : -1;
    int answer = f->n_gets < 8 && f->status_at[f->n_gets] ? f->status_at[f->n_gets] : f->get_status;
    (void)url;
    snprintf(f->get_bearer, FL_SECRET_MAX, "%s", bearer ? bearer : "");
    if (f->n_gets < 32) f->get_offsets[f->n_gets] = offset;
    f->n_gets++;
    if (answer) {
        *status = answer;
        if (f->error_body && sink(sctx, (const uint8_t *)ERROR_BODY, sizeof ERROR_BODY - 1)) return -1;
        return 0; /* a complete answer */
    }
    if (f->get_tls_refused) return FL_HTTP_TLS_REFUSED;
    pos = (f->range_status || offset == 0) ? 0 : (size_t)offset;
    *status = offset ? (f->range_status ? f->range_status : 206) : 200;
    while (pos < f->img_len) {
        size_t n = f->img_len - pos < chunk ? f->img_len - pos : chunk;
        if (cut >= 0 && sent + n > (size_t)cut) {
            n = (size_t)cut - sent;
            if (n && sink(sctx, f->img + pos, n)) return -1;
            if (!f->cut_seen) {
                memcpy(f->cut_keys, f->keys, sizeof f->keys);
                memcpy(f->cut_vals, f->vals, sizeof f->vals);
                f->cut_seen = 1;
            }
            return -1; /* connection dropped */
        }
        if (sink(sctx, f->img + pos, n)) return -1;
        pos += n;
        sent += n;
    }
    return 0;
}

static int fake_begin(void *ctx, uint64_t size, int resume) {
    fake *f = ctx;
    f->begun++;
    f->flash_size = size;
    f->resume_flag = resume;
    return 0;
}
static int fake_write(void *ctx, uint64_t off, const uint8_t *d, size_t n) {
    fake *f = ctx;
    if (off + n > IMG_MAX) return -1;
    memcpy(f->flash + off, d, n);
    f->written += n;
    return 0;
}
static int fake_read(void *ctx, uint64_t off, uint8_t *d, size_t n) {
    fake *f = ctx;
    if (off + n > IMG_MAX) return -1;
    memcpy(d, f->flash + off, n);
    return 0;
}
static int fake_commit(void *ctx, const char *v) {
    fake *f = ctx;
    f->commits++;
    snprintf(f->committed, sizeof f->committed, "%s", v);
    return 0;
}
static void fake_abort(void *ctx) {
    ((fake *)ctx)->aborts++;
}
static int fake_confirm(void *ctx, int valid) {
    ((fake *)ctx)->confirmed = valid ? 1 : -1;
    return 0;
}
static uint64_t fake_now(void *ctx) {
    fake *f = ctx;
    f->now += f->step;
    return f->now;
}
static void fake_sleep(void *ctx, uint32_t ms) {
    fake *f = ctx;
    if (f->n_sleeps < 16) {
        f->sleeps[f->n_sleeps] = ms;
        f->sleep_gets[f->n_sleeps++] = f->n_gets;
    }
    f->now += ms;
}
static int kv_find(fake *f, const char *k) {
    int i;
    for (i = 0; i < KV_MAX; i++)
        if (f->keys[i][0] && strcmp(f->keys[i], k) == 0) return i;
    return -1;
}
/* A stored value at the first cut ("" if none). */
static const char *cut_kv(const fake *f, const char *k) {
    int i;
    for (i = 0; i < KV_MAX; i++)
        if (f->cut_keys[i][0] && strcmp(f->cut_keys[i], k) == 0) return f->cut_vals[i];
    return "";
}

static int fake_kv_get(void *ctx, const char *k, char *buf, size_t cap) {
    fake *f = ctx;
    int i = kv_find(f, k);
    size_t n;
    if (i < 0) return -1;
    n = strlen(f->vals[i]);
    if (n >= cap) return -1;
    memcpy(buf, f->vals[i], n + 1);
    return (int)n;
}
static int fake_kv_set(void *ctx, const char *k, const char *v) {
    fake *f = ctx;
    int i = kv_find(f, k);
    if (strcmp(k, FL_KV_DL_OFF) == 0 && v) f->n_dl_off_sets++;
    if (!v) {
        if (i >= 0) f->keys[i][0] = '\0';
        return 0;
    }
    if (i < 0)
        for (i = 0; i < KV_MAX && f->keys[i][0]; i++) {
        }
    if (i >= KV_MAX) return -1;
    snprintf(f->keys[i], 32, "%s", k);
    snprintf(f->vals[i], sizeof f->vals[i], "%s", v);
    return 0;
}
static const char *kv(fake *f, const char *k) {
    int i = kv_find(f, k);
    return i < 0 ? "" : f->vals[i];
}
static int s_init(void *ctx, fl_sha256_state *st) {
    (void)ctx;
    return crypto_hash_sha256_init((crypto_hash_sha256_state *)st->bytes);
}
static int s_update(void *ctx, fl_sha256_state *st, const uint8_t *d, size_t n) {
    (void)ctx;
    return crypto_hash_sha256_update((crypto_hash_sha256_state *)st->bytes, d, n);
}
static int s_final(void *ctx, fl_sha256_state *st, uint8_t out[32]) {
    (void)ctx;
    return crypto_hash_sha256_final((crypto_hash_sha256_state *)st->bytes, out);
}
static int verify(void *ctx, const uint8_t sig[64], const uint8_t *m, size_t n, const uint8_t pk[32]) {
    (void)ctx;
    return crypto_sign_verify_detached(sig, m, n, pk);
}
static int b64(void *ctx, const char *in, uint8_t *out, size_t cap) {
    size_t len;
    (void)ctx;
    if (sodium_base642bin(out, cap, in, strlen(in), NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) return -1;
    return (int)len;
}
static int publish(void *ctx, const char *topic, const char *payload, int retain) {
    fake *f = ctx;
    (void)retain;
    if (f->n_reports < LOG_MAX) {
        snprintf(f->topics[f->n_reports], 96, "%s", topic);
        snprintf(f->reports[f->n_reports++], 400, "%s", payload);
    }
    return 0;
}

static int fake_mdns(void *ctx, const char *service, const char *proto, uint32_t timeout_ms, fl_mdns_service *out,
                     int max) {
    fake *f = ctx;
    int i;
    (void)timeout_ms;
    f->mdns_queries++;
    snprintf(f->mdns_asked, sizeof f->mdns_asked, "%s.%s", service, proto);
    for (i = 0; i < f->n_mdns && i < max; i++) out[i] = f->mdns[i];
    return i;
}

static fl_port port_for(fake *f) {
    fl_port p;
    memset(&p, 0, sizeof p);
    p.ctx = f;
    p.http_post_json = fake_post;
    p.http_get = fake_get;
    p.flash_begin = fake_begin;
    p.flash_write = fake_write;
    p.flash_read = fake_read;
    p.flash_commit = fake_commit;
    p.flash_abort = fake_abort;
    p.flash_confirm = fake_confirm;
    p.now_ms = fake_now;
    p.sleep_ms = fake_sleep;
    p.kv_get = fake_kv_get;
    p.kv_set = fake_kv_set;
    p.sha256_init = s_init;
    p.sha256_update = s_update;
    p.sha256_final = s_final;
    p.ed25519_verify = verify;
    p.base64_decode = b64;
    return p;
}

/* ---------------- offers ---------------- */

static uint8_t site_pk[32], site_sk[64], other_pk[32], other_sk[64];

static fl_config config(void) {
    fl_config c;
    memset(&c, 0, sizeof c);
    c.server = "http://dev.test:8070";
    c.device_id = "pump-07";
    c.mac = "24:6F:28:AA:BB:CC";
    c.model = "pump-ctl";
    c.chip = "esp32";
    c.version = "1.4.2";
    c.secure_version = 1;
    c.slot_size = IMG_MAX;
    c.allow_reenrol = 1;
    memcpy(c.pubkey, site_pk, 32);
    return c;
}

static void sha_hex(const uint8_t *d, size_t n, char hex[65]) {
    uint8_t dig[32];
    crypto_hash_sha256(dig, d, n);
    sodium_bin2hex(hex, 65, dig, 32);
}

/* An offer whose manifest is `manifest` (as is), signed with sk. Caller frees. */
static char *offer_raw(const char *job, const char *manifest, const uint8_t *sk) {
    uint8_t sig[64];
    char sig64[100];
    cJSON *o = cJSON_CreateObject();
    char *s;
    crypto_sign_detached(sig, NULL, (const uint8_t *)manifest, strlen(manifest), sk);
    sodium_bin2base64(sig64, sizeof sig64, sig, 64, sodium_base64_VARIANT_ORIGINAL);
    cJSON_AddTrueToObject(o, "update_available");
    cJSON_AddStringToObject(o, "job", job);
    cJSON_AddStringToObject(o, "url", "http://dev.test:8070/fw/abc?t=tok");
    cJSON_AddStringToObject(o, "manifest_json", manifest);
    cJSON_AddStringToObject(o, "signature", sig64);
    cJSON_AddStringToObject(o, "key_id", "a1b2c3d4e5f60718");
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static char *offer_for(const char *job, const char *version, size_t size, const char *sha, const char *chip,
                       const char *minv, int secure, const uint8_t *sk) {
    char m[512], mv[64];
    if (minv)
        snprintf(mv, sizeof mv, "\"%s\"", minv);
    else
        snprintf(mv, sizeof mv, "null");
    snprintf(m, sizeof m,
             "{\"version\":\"%s\",\"size\":%zu,\"sha256\":\"%s\",\"chip\":\"%s\",\"model\":\"pump-ctl\","
             "\"min_version\":%s,\"secure_version\":%d}",
             version, size, sha, chip, mv, secure);
    return offer_raw(job, m, sk);
}

static const char *SHA0 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

static fl_error verify_str(const fl_config *cfg, fake *f, const char *json) {
    fl_port p = port_for(f);
    fl_offer o;
    return fl_verify_offer(cfg, &p, json, strlen(json), &o);
}

static fl_error verify_owned(const fl_config *cfg, fake *f, char *json) {
    fl_error e = verify_str(cfg, f, json);
    free(json);
    return e;
}

/* ---------------- tests ---------------- */

static void test_semver(void) {
    struct {
        const char *a, *b;
        int want;
    } t[] = {
        {"1.0.0", "1.0.0", 0},          {"1.0.1", "1.0.0", 1},         {"1.10.0", "1.9.9", 1},
        {"2.0.0", "10.0.0", -1},        {"1.0.0-alpha", "1.0.0", -1},  {"1.0.0-alpha", "1.0.0-alpha.1", -1},
        {"1.0.0-alpha.1", "1.0.0-alpha.beta", -1}, {"1.0.0-beta.2", "1.0.0-beta.11", -1},
        {"1.0.0-rc.1", "1.0.0-beta.11", 1}, {"1.0.0+build.5", "1.0.0", 0}, {"v1.2.3", "1.2.3", 0},
    };
    const char *bad[] = {"", "1", "1.2", "1.2.x", "01.2.3", "1.2.3-", "1.2.3+", "1.2.3 ", "a.b.c", "1..3",
                         "1.2.3-a b", "99999999999.0.0"};
    size_t i;
    int ok;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        int r = fl_semver_cmp(t[i].a, t[i].b, &ok);
        CHECK(ok);
        CHECK((r > 0) - (r < 0) == t[i].want);
        r = fl_semver_cmp(t[i].b, t[i].a, &ok);
        CHECK((r > 0) - (r < 0) == -t[i].want);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fl_semver_cmp(bad[i], "1.0.0", &ok);
        CHECK(!ok);
    }
}

static void test_messages(void) {
    char buf[512];
    fl_config c = config();
    /* docs/device-api.md, MQTT status/ota (the example's job written out in full) */
    CHECK(fl_status_json(buf, sizeof buf, "42-1-9f0c2a71b3d4e5f60718293a", "downloading", 40, NULL) > 0);
    CHECK_STR(buf, "{\"job\":\"42-1-9f0c2a71b3d4e5f60718293a\",\"state\":\"downloading\",\"progress\":40}");
    /* POST /api/v1/report: the curl example's body without its whitespace */
    CHECK(fl_report_json(buf, sizeof buf, "pump-07", "24:6F:28:AA:BB:CC", "42-1-9f0c2a71b3d4e5f60718293a",
                         "downloading", 40, NULL) > 0);
    CHECK_STR(buf, "{\"device_id\":\"pump-07\",\"mac\":\"24:6F:28:AA:BB:CC\",\"job\":\"42-1-9f0c2a71b3d4e5f60718293a\","
                   "\"state\":\"downloading\",\"progress\":40}");
    fl_report_json(buf, sizeof buf, "pump-07", "24:6F:28:AA:BB:CC", "42-1", "rejected", -1, "bad_signature");
    CHECK_STR(buf, "{\"device_id\":\"pump-07\",\"mac\":\"24:6F:28:AA:BB:CC\",\"job\":\"42-1\",\"state\":\"rejected\","
                   "\"error\":\"bad_signature\"}");
    /* hostile strings are escaped by cJSON, not pasted */
    fl_status_json(buf, sizeof buf, "a\"b\\c\n", "failed", -1, "x");
    CHECK_STR(buf, "{\"job\":\"a\\\"b\\\\c\\n\",\"state\":\"failed\",\"error\":\"x\"}");
    CHECK(fl_status_json(buf, 10, "42-1", "downloading", 40, NULL) == -1);
    /* check-in, as the doc's example (without labels) */
    c.interval_secs = 600;
    fl_checkin_json(buf, sizeof buf, &c);
    CHECK_STR(buf, "{\"device_id\":\"pump-07\",\"mac\":\"24:6F:28:AA:BB:CC\",\"model\":\"pump-ctl\",\"chip\":\"esp32\","
                   "\"version\":\"1.4.2\",\"secure_version\":1,\"interval_secs\":600}");
    c.mac = "24:6f:28:aa:bb:cc";
    fl_presence_json(buf, sizeof buf, &c, "192.168.1.57");
    CHECK_STR(buf, "{\"online\":true,\"mac\":\"24:6f:28:aa:bb:cc\",\"model\":\"pump-ctl\",\"chip\":\"esp32\","
                   "\"version\":\"1.4.2\",\"ip\":\"192.168.1.57\"}");
}

static fake F; /* large: static */

static void test_verify(void) {
    fl_config c = config();
    char m[600], big[5000];
    int i;
    CHECK(verify_owned(&c, &F, offer_for("j1", "1.5.0", 1000, SHA0, "esp32", NULL, 1, site_sk)) == FL_E_NONE);
    /* signatures */
    CHECK(verify_owned(&c, &F, offer_for("j1", "1.5.0", 1000, SHA0, "esp32", NULL, 1, other_sk)) ==
          FL_E_BAD_SIGNATURE);
    {
        char *o = offer_for("j1", "1.5.0", 1000, SHA0, "esp32", NULL, 1, site_sk);
        char *p = strstr(o, "1.5.0"); /* the manifest inside, after signing */
        p[2] = '9';
        CHECK(verify_str(&c, &F, o) == FL_E_BAD_SIGNATURE);
        free(o);
    }
    CHECK(verify_str(&c, &F,
                     "{\"job\":\"j\",\"url\":\"u\",\"manifest_json\":\"{}\",\"signature\":\"not base64!\"}") ==
          FL_E_BAD_SIGNATURE);
    CHECK(verify_str(&c, &F, "{\"job\":\"j\",\"url\":\"u\",\"manifest_json\":\"{}\",\"signature\":\"AAAA\"}") ==
          FL_E_BAD_SIGNATURE);
    /* version rules */
    CHECK(verify_owned(&c, &F, offer_for("j", "1.4.2", 1000, SHA0, "esp32", NULL, 1, site_sk)) == FL_E_NOT_NEWER);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.4.1", 1000, SHA0, "esp32", NULL, 1, site_sk)) == FL_E_NOT_NEWER);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.4.2-rc.1", 1000, SHA0, "esp32", NULL, 1, site_sk)) ==
          FL_E_NOT_NEWER);
    c.allow_downgrade = 1;
    CHECK(verify_owned(&c, &F, offer_for("j", "1.4.1", 1000, SHA0, "esp32", NULL, 1, site_sk)) == FL_E_NONE);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.4.2", 1000, SHA0, "esp32", NULL, 1, site_sk)) == FL_E_NOT_NEWER);
    c.allow_downgrade = 0;
    snprintf(m, sizeof m,
             "{\"version\":\"1.0.0\",\"size\":10,\"sha256\":\"%s\",\"chip\":\"esp32\",\"model\":\"pump-ctl\","
             "\"secure_version\":1,\"allow_downgrade\":true}",
             SHA0);
    CHECK(verify_owned(&c, &F, offer_raw("j", m, site_sk)) == FL_E_NONE);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", 1000, SHA0, "esp32", NULL, 0, site_sk)) ==
          FL_E_SECURE_VERSION);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", 1000, SHA0, "esp32", NULL, 2, site_sk)) == FL_E_NONE);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", 1000, SHA0, "esp32", "1.4.3", 1, site_sk)) ==
          FL_E_MIN_VERSION);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", 1000, SHA0, "esp32", "1.4.2", 1, site_sk)) == FL_E_NONE);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", 1000, SHA0, "esp32", "junk", 1, site_sk)) == FL_E_MIN_VERSION);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", 1000, SHA0, "esp32s3", NULL, 1, site_sk)) == FL_E_WRONG_CHIP);
    snprintf(m, sizeof m,
             "{\"version\":\"1.5.0\",\"size\":10,\"sha256\":\"%s\",\"chip\":\"esp32\",\"model\":\"other\","
             "\"secure_version\":1}",
             SHA0);
    CHECK(verify_owned(&c, &F, offer_raw("j", m, site_sk)) == FL_E_WRONG_MODEL);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", IMG_MAX + 1, SHA0, "esp32", NULL, 1, site_sk)) ==
          FL_E_TOO_LARGE);
    CHECK(verify_owned(&c, &F, offer_for("j", "1.5.0", IMG_MAX, SHA0, "esp32", NULL, 1, site_sk)) == FL_E_NONE);
    /* only the signed fields count: an unsigned top-level "chip" changes nothing */
    {
        char *o = offer_for("j", "1.5.0", 1000, SHA0, "esp32s3", NULL, 1, site_sk);
        cJSON *j = cJSON_Parse(o);
        char *s;
        cJSON_AddStringToObject(j, "chip", "esp32");
        cJSON_AddStringToObject(j, "version", "9.0.0");
        s = cJSON_PrintUnformatted(j);
        CHECK(verify_str(&c, &F, s) == FL_E_WRONG_CHIP);
        free(s);
        cJSON_Delete(j);
        free(o);
    }
    /* malformed and hostile JSON */
    {
        const char *bad[] = {"",
                             "{",
                             "[]",
                             "null",
                             "\"str\"",
                             "{\"job\":1}",
                             "{\"job\":\"j\"}",
                             "{\"job\":\"j\",\"url\":\"u\",\"manifest_json\":5,\"signature\":\"x\"}",
                             "{\"job\":\"\",\"url\":\"u\",\"manifest_json\":\"{}\",\"signature\":\"x\"}",
                             "{\"job\":\"j\",\"url\":\"u\",\"manifest_json\":\"{}\"}\0garbage"};
        size_t k;
        for (k = 0; k < sizeof bad / sizeof bad[0]; k++) CHECK(verify_str(&c, &F, bad[k]) == FL_E_BAD_OFFER);
    }
    for (i = 0; i < 4000; i++) big[i] = '[';
    big[4000] = '\0';
    CHECK(verify_str(&c, &F, big) == FL_E_BAD_OFFER); /* deep nesting: cJSON's limit, no stack overflow */
    memset(big, 'j', 4000);
    memcpy(big, "{\"job\":\"", 8);
    strcpy(big + 3000, "\",\"url\":\"u\",\"manifest_json\":\"{}\",\"signature\":\"x\"}");
    CHECK(verify_str(&c, &F, big) == FL_E_BAD_OFFER); /* a job longer than FL_JOB_MAX */
    {
        /* signed, but a manifest that is not what it should be */
        const char *ms[] = {
            "not json",
            "[]",
            "{\"version\":\"1.5.0\",\"size\":-5,\"sha256\":\"%s\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":1.5,\"sha256\":\"%s\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":\"10\",\"sha256\":\"%s\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":1e300,\"sha256\":\"%s\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":0,\"sha256\":\"%s\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":10,\"sha256\":\"%.63s\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":10,\"sha256\":\"%sa\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":10,\"sha256\":\"%s\"}",
            "{\"version\":\"x.y\",\"size\":10,\"sha256\":\"%s\",\"chip\":\"esp32\"}",
            "{\"version\":\"1.5.0\",\"size\":10,\"sha256\":\"%s\",\"chip\":\"esp32\",\"secure_version\":-1}",
            "{\"version\":\"1.5.0\",\"size\":10,\"sha256\":\"%s\",\"chip\":\"esp32\",\"min_version\":7}",
        };
        size_t k;
        for (k = 0; k < sizeof ms / sizeof ms[0]; k++) {
            snprintf(m, sizeof m, ms[k], SHA0);
            CHECK(verify_owned(&c, &F, offer_raw("j", m, site_sk)) == FL_E_BAD_OFFER);
        }
        /* uppercase hex is not what Flotilla signs */
        snprintf(m, sizeof m, "{\"version\":\"1.5.0\",\"size\":10,\"sha256\":\"%s\",\"chip\":\"esp32\"}",
                 "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08");
        CHECK(verify_owned(&c, &F, offer_raw("j", m, site_sk)) == FL_E_BAD_OFFER);
    }
}

/* A fresh fake serving a random image of n bytes; returns the signed offer for it. */
static char *setup(fake *f, size_t n, const char *job) {
    char hex[65];
    memset(f, 0, sizeof *f);
    memset(f->cut_after, 0xff, sizeof f->cut_after); /* -1: never */
    randombytes_buf(f->img, n);
    f->img_len = n;
    f->step = 1;
    sha_hex(f->img, n, hex);
    return offer_for(job, "1.5.0", n, hex, "esp32", NULL, 1, site_sk);
}

static void script(fake *f, int status, const char *body) {
    f->check_status[f->n_checks] = status;
    f->check_body[f->n_checks++] = body;
}

static int count_reports(fake *f, const char *needle) {
    int i, n = 0;
    for (i = 0; i < f->n_reports; i++)
        if (strstr(f->reports[i], needle)) n++;
    return n;
}

static const char *CRED = "{\"update_available\":false,\"credential\":{\"secret\":\"S3CRET-1\",\"generation\":1,"
                          "\"mqtt_username\":\"pump-07\",\"mqtt_password\":\"pw\"}}";

static void test_enrol_download_resume_apply(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 50000, "42-1-9f0c2a71b3d4e5f60718293a");
    int i;
    script(&F, 200, CRED);
    script(&F, 200, offer);
    F.cut_after[0] = 20500; /* the first connection breaks off mid-body */
    F.cut_after[1] = 10000; /* and the second */
    CHECK(fl_init(&cl, &c, &p) == 0);
    CHECK(fl_check_in(&cl) == FL_OK_REBOOT);
    /* enrolment: first check-in without a bearer, the second and everything after with it */
    CHECK_STR(F.check_bearer[0], "");
    CHECK_STR(F.check_bearer[1], "S3CRET-1");
    CHECK_STR(kv(&F, FL_KV_SECRET), "S3CRET-1");
    CHECK_STR(kv(&F, FL_KV_MQTT_PASS), "pw");
    CHECK_STR(kv(&F, FL_KV_GEN), "1");
    CHECK_STR(F.get_bearer, "S3CRET-1");
    CHECK_STR(F.report_bearer, "S3CRET-1");
    /* resumed where each connection broke off */
    CHECK(F.n_gets == 3);
    CHECK(F.get_offsets[0] == 0 && F.get_offsets[1] == 20500 && F.get_offsets[2] == 30500);
    CHECK(memcmp(F.flash, F.img, 50000) == 0);
    CHECK(F.commits == 1 && F.aborts == 0);
    CHECK_STR(F.committed, "1.5.0");
    CHECK(F.n_dl_off_sets >= 2); /* the offset was persisted as it went */
    CHECK_STR(kv(&F, FL_KV_DL_OFF), "");
    CHECK_STR(kv(&F, FL_KV_PENDING_VER), "1.5.0");
    /* the reports, in order */
    CHECK_STR(F.reports[0], "{\"device_id\":\"pump-07\",\"mac\":\"24:6F:28:AA:BB:CC\",\"job\":"
                            "\"42-1-9f0c2a71b3d4e5f60718293a\",\"state\":\"downloading\",\"progress\":0}");
    CHECK(strstr(F.reports[F.n_reports - 3], "\"state\":\"downloading\",\"progress\":100}") != NULL);
    CHECK(strstr(F.reports[F.n_reports - 2], "\"state\":\"installing\"}") != NULL);
    CHECK(strstr(F.reports[F.n_reports - 1], "\"state\":\"rebooting\"}") != NULL);
    for (i = 0; i < F.n_reports; i++) CHECK(strstr(F.reports[i], "failed") == NULL);
    /* the same job again: ignored */
    F.check_i = 0;
    F.n_checks = 0;
    script(&F, 200, offer);
    i = F.n_reports;
    CHECK(fl_check_in(&cl) == FL_OK_IGNORED);
    CHECK(F.n_reports == i && F.commits == 1);
    free(offer);
}

static void test_offer_not_nul_terminated(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 20000, "j-mqtt");
    size_t n = strlen(offer);
    char *exact = malloc(n); /* exactly the payload's bytes, as an MQTT library hands them */
    memcpy(exact, offer, n);
    F.cut_after[0] = 5000;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, exact, n) == FL_OK_REBOOT);
    CHECK(F.commits == 1 && memcmp(F.flash, F.img, 20000) == 0);
    free(exact);
    free(offer);
}

static void test_progress_rate_limited(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 100000, "j-rate");
    F.chunk = 100; /* 1000 chunks */
    F.step = 10;   /* 10 ms per chunk: 10 s of download */
    c.progress_interval_ms = 2000;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
    /* 0 %, about one per 2 s, 100 %: never one per chunk */
    CHECK(count_reports(&F, "downloading") >= 4 && count_reports(&F, "downloading") <= 8);
    free(offer);
}

static void test_tampered_image(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 30000, "j-tamper");
    F.img[12345] ^= 1;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
    CHECK(F.commits == 0 && F.aborts == 1);
    CHECK(strstr(F.reports[F.n_reports - 1], "\"state\":\"failed\",\"error\":\"sha256_mismatch\"}") != NULL);
    CHECK_STR(kv(&F, FL_KV_PENDING_JOB), "");
    free(offer);
}

static void test_rejections_write_nothing(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    struct {
        char *offer;
        const char *err;
    } t[4];
    int i;
    char *o = setup(&F, 1000, "x");
    free(o);
    t[0].offer = offer_for("r1", "1.5.0", 1000, SHA0, "esp32", NULL, 1, other_sk), t[0].err = "bad_signature";
    t[1].offer = offer_for("r2", "1.0.0", 1000, SHA0, "esp32", NULL, 1, site_sk), t[1].err = "not_newer";
    t[2].offer = offer_for("r3", "1.5.0", 1000, SHA0, "esp8266", NULL, 1, site_sk), t[2].err = "wrong_chip";
    t[3].offer = offer_for("r4", "1.5.0", 1000, SHA0, "esp32", NULL, 0, site_sk), t[3].err = "secure_version";
    fl_init(&cl, &c, &p);
    for (i = 0; i < 4; i++) {
        char want[128];
        CHECK(fl_handle_offer(&cl, t[i].offer, strlen(t[i].offer)) == FL_REJECTED);
        snprintf(want, sizeof want, "\"job\":\"r%d\",\"state\":\"rejected\",\"error\":\"%s\"}", i + 1, t[i].err);
        CHECK(strstr(F.reports[F.n_reports - 1], want) != NULL);
        /* a second delivery of the same job is not reported twice */
        CHECK(fl_handle_offer(&cl, t[i].offer, strlen(t[i].offer)) == FL_OK_IGNORED);
        free(t[i].offer);
    }
    CHECK(F.n_reports == 4);
    CHECK(F.begun == 0 && F.written == 0 && F.commits == 0 && F.n_gets == 0);
}

static void test_download_failures(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 30000, "j-403");
    F.get_status = 403;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
    CHECK(strstr(F.reports[F.n_reports - 1], "\"error\":\"download\"") != NULL);
    CHECK(F.commits == 0 && F.aborts == 1 && F.n_gets == 1);
    free(offer);

    /* a connection that always breaks at the same place without progress: bounded retries */
    offer = setup(&F, 30000, "j-drop");
    memset(F.cut_after, 0, sizeof F.cut_after);
    c.max_retries = 3;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
    CHECK(F.n_gets == 4 && F.commits == 0);
    CHECK(strstr(F.reports[F.n_reports - 1], "\"error\":\"download\"") != NULL);
    free(offer);

    /* the body is shorter than the signed size */
    offer = setup(&F, 30000, "j-short");
    F.img_len = 29000;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
    CHECK(strstr(F.reports[F.n_reports - 1], "\"error\":\"size_mismatch\"") != NULL);
    free(offer);

    /* longer: never written past the signed size */
    {
        char hex[65];
        memset(&F, 0, sizeof F);
        memset(F.cut_after, 0xff, sizeof F.cut_after);
        F.img_len = 31000;
        sha_hex(F.img, 30000, hex);
        offer = offer_for("j-long", "1.5.0", 30000, hex, "esp32", NULL, 1, site_sk);
        fl_init(&cl, &c, &p);
        CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
        CHECK(F.written <= 30000 && F.commits == 0);
        CHECK(strstr(F.reports[F.n_reports - 1], "\"error\":\"size_mismatch\"") != NULL);
        free(offer);
    }
}

static void test_range_answers(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 40000, "j-norange");
    const int other[] = {203, 500};
    size_t k;
    F.cut_after[0] = 15000;
    F.range_status = 200;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
    CHECK(F.n_gets == 2 && F.get_offsets[1] == 15000); /* asked to resume, got the whole file:
                                                         * started over within that GET */
    CHECK(memcmp(F.flash, F.img, 40000) == 0);
    CHECK(F.commits == 1);
    free(offer);

    /* any other answer to a Range request than 206 or 200 (here with the whole file as its
     * body): failed at once, not retried, and none of that body written at the resume offset */
    for (k = 0; k < sizeof other / sizeof other[0]; k++) {
        offer = setup(&F, 40000, "j-badrange");
        F.cut_after[0] = 15000;
        F.range_status = other[k];
        fl_init(&cl, &c, &p);
        CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
        CHECK(F.n_gets == 2 && F.get_offsets[1] == 15000);
        CHECK(F.written == 15000 && F.commits == 0 && F.aborts == 1);
        CHECK(strstr(F.reports[F.n_reports - 1], "\"state\":\"failed\",\"error\":\"download\"}") != NULL);
        CHECK_STR(kv(&F, FL_KV_DL_OFFER), "");
        free(offer);
    }
}

static void test_retries_and_backoff(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 30000, "j-fresh");
    int i;
    /* one retry allowed, but every connection that brings bytes earns a fresh one: three GETs
     * that each break off after 5000 bytes, then one that finishes */
    F.cut_after[0] = 5000;
    F.cut_after[1] = 5000;
    F.cut_after[2] = 5000;
    c.max_retries = 1;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
    CHECK(F.n_gets == 4 && F.get_offsets[1] == 5000 && F.get_offsets[2] == 10000 && F.get_offsets[3] == 15000);
    CHECK(memcmp(F.flash, F.img, 30000) == 0 && F.commits == 1);
    /* the backoff starts over too: the first wait before each retry */
    CHECK(F.n_sleeps == 3);
    for (i = 0; i < F.n_sleeps; i++) CHECK(F.sleeps[i] == 1000 && F.sleep_gets[i] == i + 1);
    free(offer);

    /* no progress at all: a wait before each retry (none before the first GET), doubling from
     * 1 s up to 16 s, then the download fails */
    offer = setup(&F, 30000, "j-backoff");
    memset(F.cut_after, 0, sizeof F.cut_after);
    c.max_retries = 7;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
    CHECK(F.n_gets == 8 && F.written == 0 && F.commits == 0);
    CHECK(strstr(F.reports[F.n_reports - 1], "\"error\":\"download\"") != NULL);
    CHECK(F.n_sleeps == 7);
    {
        const uint32_t want[] = {1000, 2000, 4000, 8000, 16000, 16000, 16000};
        for (i = 0; i < 7; i++) CHECK(F.sleeps[i] == want[i] && F.sleep_gets[i] == i + 1);
    }
    free(offer);
}

/* A complete answer with another status than 200/206, its body dropped (as the ports do) or
 * passed on: never a short transfer. 5xx, 408 and 429 are retried like a dropped connection;
 * anything else fails the download at once. */
static void test_error_statuses(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    const int transient[] = {503, 500, 502, 504, 408, 429}, final[] = {400, 405, 302, 204};
    char *offer;
    size_t k;
    int body, i;

    /* a transient error to the first GET, then the file: one wait, then a normal download */
    for (body = 0; body < 2; body++)
        for (k = 0; k < sizeof transient / sizeof transient[0]; k++) {
            offer = setup(&F, 30000, "j-503");
            F.status_at[0] = transient[k];
            F.error_body = body;
            fl_init(&cl, &c, &p);
            CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
            CHECK(F.n_gets == 2 && F.get_offsets[1] == 0);
            CHECK(F.n_sleeps == 1 && F.sleeps[0] == 1000 && F.sleep_gets[0] == 1);
            CHECK(F.written == 30000 && memcmp(F.flash, F.img, 30000) == 0); /* no error body */
            CHECK(F.commits == 1 && F.aborts == 0 && count_reports(&F, "failed") == 0);
            free(offer);
        }

    /* a server error to every GET: the retries run out, then `download`, nothing committed */
    for (body = 0; body < 2; body++) {
        offer = setup(&F, 30000, "j-500");
        F.get_status = 500;
        F.error_body = body;
        c.max_retries = 3;
        fl_init(&cl, &c, &p);
        CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
        CHECK(F.n_gets == 4 && F.n_sleeps == 3);
        CHECK(strstr(F.reports[F.n_reports - 1], "\"state\":\"failed\",\"error\":\"download\"}") != NULL);
        CHECK(F.written == 0 && F.commits == 0 && F.aborts == 1);
        CHECK_STR(kv(&F, FL_KV_DL_OFFER), "");
        free(offer);
    }
    c.max_retries = 0;

    /* an answer that will not change: `download` after one GET, no wait */
    for (body = 0; body < 2; body++)
        for (k = 0; k < sizeof final / sizeof final[0]; k++) {
            offer = setup(&F, 30000, "j-400");
            F.get_status = final[k];
            F.error_body = body;
            fl_init(&cl, &c, &p);
            CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
            CHECK(F.n_gets == 1 && F.n_sleeps == 0);
            CHECK(strstr(F.reports[F.n_reports - 1], "\"state\":\"failed\",\"error\":\"download\"}") != NULL);
            CHECK(F.written == 0 && F.commits == 0 && F.aborts == 1);
            free(offer);
        }

    /* a 503 to a resumed GET: it counts as an attempt (the wait doubles), then the next one
     * resumes at the same offset */
    offer = setup(&F, 40000, "j-503-resume");
    F.cut_after[0] = 15000;
    F.status_at[1] = 503;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
    CHECK(F.n_gets == 3 && F.get_offsets[1] == 15000 && F.get_offsets[2] == 15000);
    CHECK(F.n_sleeps == 2);
    for (i = 0; i < F.n_sleeps; i++) CHECK(F.sleeps[i] == 1000u << i && F.sleep_gets[i] == i + 1);
    CHECK(F.written == 40000 && memcmp(F.flash, F.img, 40000) == 0 && F.commits == 1);
    CHECK(count_reports(&F, "failed") == 0);
    free(offer);
}

static void test_resume_after_reboot(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer = setup(&F, 60000, "j-reboot");
    /* what the previous boot left: 32 KiB in flash and the offset in NVS */
    memcpy(F.flash, F.img, 32768);
    fake_kv_set(&F, FL_KV_DL_JOB, "j-reboot");
    fake_kv_set(&F, FL_KV_DL_OFF, "32768");
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
    CHECK(F.get_offsets[0] == 32768 && F.n_gets == 1 && F.resume_flag == 1);
    CHECK(memcmp(F.flash, F.img, 60000) == 0 && F.commits == 1);
    free(offer);

    /* the offer itself is kept: after a reboot, the next fl_check_in finishes the download
     * before asking the engine anything (it will not offer an in-flight job again) */
    offer = setup(&F, 60000, "j-kept");
    F.cut_after[0] = 40000;
    F.cut_after[1] = 0; /* the link stays down: the attempt fails */
    F.cut_after[2] = 0;
    c.max_retries = 2;
    fl_init(&cl, &c, &p);
    fl_handle_offer(&cl, offer, strlen(offer));
    /* what a power cut when the link died would have left in storage: the offer, its job and
     * how far it got (what the next boot resumes from, below) */
    CHECK(F.cut_seen);
    CHECK_STR(cut_kv(&F, FL_KV_DL_OFFER), offer);
    CHECK_STR(cut_kv(&F, FL_KV_DL_JOB), "j-kept");
    CHECK(atol(cut_kv(&F, FL_KV_DL_OFF)) > 0 && atol(cut_kv(&F, FL_KV_DL_OFF)) <= 40000);
    CHECK(F.commits == 0);
    CHECK_STR(kv(&F, FL_KV_DL_OFFER), ""); /* a failed download is over, nothing kept */
    free(offer);
    offer = setup(&F, 60000, "j-kept2");
    memcpy(F.flash, F.img, 20000);
    fake_kv_set(&F, FL_KV_DL_OFFER, offer);
    fake_kv_set(&F, FL_KV_DL_JOB, "j-kept2");
    fake_kv_set(&F, FL_KV_DL_OFF, "20000");
    c.max_retries = 0;
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_OK_REBOOT);
    CHECK(F.check_i == 0);                       /* no check-in was needed */
    CHECK(F.get_offsets[0] == 20000 && F.n_gets == 1);
    CHECK(memcmp(F.flash, F.img, 60000) == 0 && F.commits == 1);
    CHECK_STR(kv(&F, FL_KV_DL_OFFER), "");
    free(offer);
    /* a kept offer that no longer verifies is reported, dropped, and the next check-in is normal */
    offer = setup(&F, 60000, "j-bad");
    fake_kv_set(&F, FL_KV_DL_OFFER, "{\"job\":\"j-bad\",\"url\":\"u\",\"manifest_json\":\"{}\",\"signature\":\"AAAA\"}");
    script(&F, 200, "{\"update_available\":false}");
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_REJECTED);
    CHECK(F.begun == 0 && F.commits == 0);
    CHECK_STR(kv(&F, FL_KV_DL_OFFER), "");
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE && F.check_i == 1);
    free(offer);

    /* an offset of another job, or past the end, is not believed */
    offer = setup(&F, 60000, "j-new");
    fake_kv_set(&F, FL_KV_DL_JOB, "j-old");
    fake_kv_set(&F, FL_KV_DL_OFF, "32768");
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
    CHECK(F.get_offsets[0] == 0 && F.resume_flag == 0);
    free(offer);
    offer = setup(&F, 60000, "j-past");
    fake_kv_set(&F, FL_KV_DL_JOB, "j-past");
    fake_kv_set(&F, FL_KV_DL_OFF, "99999999");
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_OK_REBOOT);
    CHECK(F.get_offsets[0] == 0);
    free(offer);
    /* a corrupt prefix left in flash is caught by the hash */
    offer = setup(&F, 60000, "j-corrupt");
    memcpy(F.flash, F.img, 32768);
    F.flash[100] ^= 0xff;
    fake_kv_set(&F, FL_KV_DL_JOB, "j-corrupt");
    fake_kv_set(&F, FL_KV_DL_OFF, "32768");
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
    CHECK(F.commits == 0 && strstr(F.reports[F.n_reports - 1], "sha256_mismatch") != NULL);
    free(offer);
}

static void test_auth_paths(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    /* re-keyed: the engine answers the old secret with a new credential; it replaces the old */
    free(setup(&F, 10, "x"));
    fake_kv_set(&F, FL_KV_SECRET, "OLD");
    script(&F, 200, "{\"update_available\":false,\"credential\":{\"secret\":\"NEW-2\",\"generation\":2}}");
    script(&F, 200, "{\"update_available\":false}");
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE);
    CHECK_STR(F.check_bearer[0], "OLD");
    CHECK_STR(F.check_bearer[1], "NEW-2");
    CHECK_STR(kv(&F, FL_KV_SECRET), "NEW-2");
    CHECK_STR(kv(&F, FL_KV_GEN), "2");

    /* refused (revoked, wrong secret): the secret is kept, nothing else is sent */
    free(setup(&F, 10, "x"));
    fake_kv_set(&F, FL_KV_SECRET, "OLD");
    script(&F, 401, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"revoked\"}}");
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_ERR_UNAUTHORIZED);
    CHECK(F.check_i == 1 && F.n_reports == 0);
    CHECK_STR(kv(&F, FL_KV_SECRET), "OLD");

    /* a device set not to take a replacement keeps its secret */
    free(setup(&F, 10, "x"));
    fake_kv_set(&F, FL_KV_SECRET, "OLD");
    script(&F, 200, "{\"update_available\":false,\"credential\":{\"secret\":\"NEW-2\",\"generation\":2}}");
    c.allow_reenrol = 0;
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE);
    CHECK_STR(kv(&F, FL_KV_SECRET), "OLD");
    CHECK(F.check_i == 1);
    /* ... but enrols when it has none */
    free(setup(&F, 10, "x"));
    script(&F, 200, CRED);
    script(&F, 200, "{\"update_available\":false}");
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE);
    CHECK_STR(kv(&F, FL_KV_SECRET), "S3CRET-1");
    CHECK_STR(F.check_bearer[1], "S3CRET-1");

    /* an answer that keeps sending credentials does not loop */
    free(setup(&F, 10, "x"));
    script(&F, 200, CRED);
    script(&F, 200, CRED);
    script(&F, 200, CRED);
    c.allow_reenrol = 1;
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_ERR_UNAUTHORIZED);
    CHECK(F.check_i == 2);

    /* approval pending, server errors, garbage answers */
    free(setup(&F, 10, "x"));
    script(&F, 200, "{\"update_available\":false,\"approval\":\"pending\"}");
    script(&F, 503, "{}");
    script(&F, 200, "<html>");
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_PENDING_APPROVAL);
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK); /* transport error */
    CHECK(F.n_reports == 0);
}

static void test_after_boot(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    free(setup(&F, 10, "x"));
    fl_init(&cl, &c, &p);
    CHECK(fl_after_boot(&cl, 1) == 0); /* nothing pending */

    fake_kv_set(&F, FL_KV_PENDING_JOB, "j9");
    fake_kv_set(&F, FL_KV_PENDING_VER, "1.4.2");
    CHECK(fl_after_boot(&cl, 1) == 1);
    CHECK(F.confirmed == 1 && F.n_reports == 0);
    CHECK_STR(kv(&F, FL_KV_PENDING_JOB), "");

    fake_kv_set(&F, FL_KV_PENDING_JOB, "j9");
    fake_kv_set(&F, FL_KV_PENDING_VER, "1.4.2");
    CHECK(fl_after_boot(&cl, 0) == -1); /* health check failed */
    CHECK(F.confirmed == -1);
    CHECK(strstr(F.reports[0], "\"job\":\"j9\",\"state\":\"failed\",\"error\":\"rollback\"}") != NULL);

    fake_kv_set(&F, FL_KV_PENDING_JOB, "j10");
    fake_kv_set(&F, FL_KV_PENDING_VER, "1.5.0"); /* the bootloader went back to the old image */
    CHECK(fl_after_boot(&cl, 1) == -1);
    CHECK(strstr(F.reports[1], "\"job\":\"j10\",\"state\":\"failed\",\"error\":\"rollback\"}") != NULL);
}

static void test_mqtt_reports(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    free(setup(&F, 10, "x"));
    p.mqtt_publish = publish;
    c.report_via_mqtt = 1;
    fl_init(&cl, &c, &p);
    CHECK(fl_report(&cl, "42-1-9f0c2a71b3d4e5f60718293a", "downloading", 40, NULL) == 0);
    CHECK_STR(F.topics[0], "flotilla/pump-07/status/ota");
    CHECK_STR(F.reports[0], "{\"job\":\"42-1-9f0c2a71b3d4e5f60718293a\",\"state\":\"downloading\",\"progress\":40}");
}

static void test_init_args(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    c.server = NULL;
    CHECK(fl_init(&cl, &c, &p) == -1);
    c = config();
    p.ed25519_verify = NULL;
    CHECK(fl_init(&cl, &c, &p) == -1);
}


/* ---------------- discovery, TLS, refusals, backoff ---------------- */

static char site_fp[17];

/* An instance as the engine advertises it: api, fp (the site key id), v, tls, fps. */
static fl_mdns_service instance(const char *addr, uint16_t port, const char *fp, const char *tls, const char *fps) {
    fl_mdns_service s;
    memset(&s, 0, sizeof s);
    snprintf(s.addr, sizeof s.addr, "%s", addr);
    s.port = port;
    fl_mdns_add_txt(&s, "api", 3, "/api/v1", 7);
    if (fp) fl_mdns_add_txt(&s, "fp", 2, fp, strlen(fp));
    fl_mdns_add_txt(&s, "v", 1, "0.1.0", 5);
    if (tls) fl_mdns_add_txt(&s, "tls", 3, tls, strlen(tls));
    if (fps) fl_mdns_add_txt(&s, "fps", 3, fps, strlen(fps));
    return s;
}

static void test_mdns_txt(void) {
    fl_mdns_service s;
    char big[300];
    memset(&s, 0, sizeof s);
    CHECK(fl_mdns_add_txt(&s, "api", 3, "/api/v1", 7) == 0);
    CHECK(fl_mdns_add_txt(&s, "empty", 5, NULL, 0) == 0);
    CHECK(s.txt_len == 12 + 7);
    CHECK_STR(fl_mdns_txt(&s, "api"), "/api/v1");
    CHECK_STR(fl_mdns_txt(&s, "API"), "/api/v1"); /* keys are case-insensitive (RFC 6763 6.4) */
    CHECK_STR(fl_mdns_txt(&s, "empty"), "");
    CHECK(fl_mdns_txt(&s, "ap") == NULL && fl_mdns_txt(&s, "apix") == NULL && fl_mdns_txt(&s, "") == NULL);
    /* refused: an empty key, '=' or NUL in a key, NUL in a value, more than fits */
    CHECK(fl_mdns_add_txt(&s, "", 0, "x", 1) == -1);
    CHECK(fl_mdns_add_txt(&s, "a=b", 3, "x", 1) == -1);
    CHECK(fl_mdns_add_txt(&s, "a\0b", 3, "x", 1) == -1);
    CHECK(fl_mdns_add_txt(&s, "k", 1, "x\0y", 3) == -1);
    CHECK(fl_mdns_add_txt(&s, "k", 1, NULL, 5) == -1);
    memset(big, 'x', sizeof big);
    CHECK(fl_mdns_add_txt(&s, "k", 1, big, FL_MDNS_TXT_CAP - s.txt_len - 2) == -1);
    CHECK(fl_mdns_add_txt(&s, "k", 1, big, FL_MDNS_TXT_CAP - s.txt_len - 3) == 0); /* exactly full */
    CHECK(s.txt_len == FL_MDNS_TXT_CAP);
    CHECK(fl_mdns_add_txt(&s, "k", 1, NULL, 0) == -1);
    CHECK(strlen(fl_mdns_txt(&s, "k")) == (size_t)(FL_MDNS_TXT_CAP - 19 - 3));
    /* a port that filled the buffer itself, unterminated or with a lying length */
    memset(&s, 'a', sizeof s);
    s.txt_len = 0xffff;
    CHECK(fl_mdns_txt(&s, "api") == NULL);
    s.txt_len = 5;
    CHECK(fl_mdns_txt(&s, "aaaa") == NULL);
}

static void test_mdns_pick(void) {
    fl_config c = config();
    fl_port p = port_for(&F);
    fl_mdns_service list[FL_MDNS_MAX];
    char url[FL_SERVER_MAX], pin[80], fps[65], other_fps[65];
    uint8_t spki[32];
    memset(spki, 0x5a, sizeof spki);
    sodium_bin2hex(fps, sizeof fps, spki, 32);
    memset(other_fps, 'b', 64);
    other_fps[64] = '\0';
    strcpy(pin, "sha256//");
    sodium_bin2base64(pin + 8, sizeof pin - 8, spki, 32, sodium_base64_VARIANT_ORIGINAL);

    /* No pin: plain HTTP on the advertised port; instances not ours are passed over. */
    list[0] = instance("10.0.0.9", 8070, "0011223344556677", "8443", fps); /* another site's key */
    list[1] = instance("10.0.0.8", 8070, site_fp, "8443", fps);
    fl_mdns_add_txt(&list[1], "x", 1, "y", 1);
    list[1].txt[4] = 'X'; /* api=Xapi/v1: not an API this client speaks */
    list[2] = instance("not-an-ip", 8070, site_fp, NULL, NULL);
    list[3] = instance("10.0.0.7", 8071, site_fp, "8443", fps);
    CHECK(fl_mdns_pick(&c, &p, list, 4, url, sizeof url) == 3);
    CHECK_STR(url, "http://10.0.0.7:8071");
    CHECK(fl_mdns_pick(&c, &p, list, 3, url, sizeof url) == -1);
    list[0] = instance("10.0.0.6", 0, site_fp, NULL, NULL); /* no port */
    CHECK(fl_mdns_pick(&c, &p, list, 1, url, sizeof url) == -1);
    list[0] = instance("10.0.0.6", 8070, NULL, NULL, NULL); /* no fp */
    CHECK(fl_mdns_pick(&c, &p, list, 1, url, sizeof url) == -1);

    /* Pinned: HTTPS only, to the advertised TLS port, and only the pinned key. */
    c.tls_pin = pin;
    list[0] = instance("10.0.0.5", 8070, site_fp, NULL, fps);           /* no HTTPS: no downgrade */
    list[1] = instance("10.0.0.4", 8070, site_fp, "8443", other_fps);   /* another key */
    list[2] = instance("10.0.0.3", 8070, site_fp, "99999", fps);        /* a bad port */
    list[3] = instance("10.0.0.2", 8070, site_fp, "8443", fps);
    CHECK(fl_mdns_pick(&c, &p, list, 4, url, sizeof url) == 3);
    CHECK_STR(url, "https://10.0.0.2:8443");
    CHECK(fl_mdns_pick(&c, &p, list, 3, url, sizeof url) == -1);
    list[3] = instance("10.0.0.2", 8070, site_fp, "8443", NULL); /* the pinned key not advertised */
    CHECK(fl_mdns_pick(&c, &p, list, 4, url, sizeof url) == -1);
    list[3] = instance("10.0.0.2", 8070, site_fp, "8443", "zz");
    CHECK(fl_mdns_pick(&c, &p, list, 4, url, sizeof url) == -1);
    /* libcurl's list of pins: any of them */
    {
        char two[200];
        snprintf(two, sizeof two, "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;%s", pin);
        c.tls_pin = two;
        list[3] = instance("10.0.0.2", 8070, site_fp, "8443", fps);
        CHECK(fl_mdns_pick(&c, &p, list, 4, url, sizeof url) == 3);
    }
    /* a PEM pin says nothing comparable: the TLS layer checks it; still HTTPS only */
    c.tls_pin = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n";
    CHECK(fl_mdns_pick(&c, &p, list, 4, url, sizeof url) == 1);
    CHECK_STR(url, "https://10.0.0.4:8443");
    /* a URL that does not fit is not written half */
    CHECK(fl_mdns_pick(&c, &p, list, 4, url, 12) == -1);
}

static void test_discovery_check_in(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    free(setup(&F, 10, "x"));
    c.server = NULL;
    CHECK(fl_init(&cl, &c, &p) == -1); /* neither a server nor a way to find one */
    p.mdns_query = fake_mdns;
    CHECK(fl_init(&cl, &c, &p) == 0);

    /* nothing found: a network failure, nothing posted */
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    CHECK(F.mdns_queries == 1 && F.n_posts == 0);
    CHECK_STR(F.mdns_asked, "_flotilla._tcp");

    /* found: the check-in goes there and says nothing of TLS */
    F.mdns[0] = instance("192.168.1.20", 8070, site_fp, "8443", NULL);
    F.n_mdns = 1;
    script(&F, 200, CRED);
    script(&F, 200, "{\"update_available\":false}");
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE);
    CHECK_STR(F.post_urls[0], "http://192.168.1.20:8070/api/v1/check");
    CHECK_STR(F.post_urls[1], "http://192.168.1.20:8070/api/v1/check");
    CHECK(F.mdns_queries == 2);
    /* known now: no query */
    script(&F, 200, "{\"update_available\":false}");
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE);
    CHECK(F.mdns_queries == 2);
    /* unreachable (no answer scripted): forgotten, found again at the next check-in */
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    F.mdns[0] = instance("192.168.1.21", 8070, site_fp, "8443", NULL);
    script(&F, 200, "{\"update_available\":false}");
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE);
    CHECK(F.mdns_queries == 3);
    CHECK_STR(F.post_urls[F.n_posts - 1], "http://192.168.1.21:8070/api/v1/check");
    /* an engine that answers, even with an error, is kept */
    script(&F, 503, "{}");
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    script(&F, 200, "{\"update_available\":false}");
    CHECK(fl_check_in(&cl) == FL_OK_NO_UPDATE);
    CHECK(F.mdns_queries == 3);

    /* a configured server is never looked up */
    free(setup(&F, 10, "x"));
    c = config();
    p.mdns_query = fake_mdns;
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    CHECK(F.mdns_queries == 0);
}

static void test_tls_declared(void) {
    char buf[512];
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    char *offer;
    c.server = "https://dev.test:8443";
    fl_checkin_json(buf, sizeof buf, &c);
    CHECK_STR(buf, "{\"device_id\":\"pump-07\",\"mac\":\"24:6F:28:AA:BB:CC\",\"model\":\"pump-ctl\",\"chip\":\"esp32\","
                   "\"version\":\"1.4.2\",\"secure_version\":1,\"tls\":true}");
    c.server = "http://dev.test:8070";
    fl_checkin_json(buf, sizeof buf, &c);
    CHECK(strstr(buf, "tls") == NULL);

    /* a download server that is not the pinned one: refused at once, not retried, nothing kept */
    offer = setup(&F, 30000, "j-tls");
    F.get_tls_refused = 1;
    fl_init(&cl, &c, &p);
    CHECK(fl_handle_offer(&cl, offer, strlen(offer)) == FL_FAILED);
    CHECK(F.n_gets == 1 && F.written == 0 && F.commits == 0 && F.aborts == 1);
    CHECK(strstr(F.reports[F.n_reports - 1], "\"state\":\"failed\",\"error\":\"tls\"}") != NULL);
    CHECK_STR(kv(&F, FL_KV_DL_OFFER), "");
    free(offer);
}

static void test_refused_quietly_with_backoff(void) {
    fl_client cl;
    fl_config c = config();
    fl_port p = port_for(&F);
    uint32_t ms;
    free(setup(&F, 10, "x"));
    fake_kv_set(&F, FL_KV_SECRET, "OLD");
    c.interval_secs = 10;
    fl_init(&cl, &c, &p);
    /* the interval with +-20 % jitter */
    CHECK(fl_next_check_in_ms(&cl, 0) == 8000 && fl_next_check_in_ms(&cl, 40) == 12000);
    CHECK(fl_next_check_in_ms(&cl, 20) == 10000 && fl_next_check_in_ms(&cl, 41) == 8000);
    /* revoked: refused again and again; each wait longer, up to 8x */
    script(&F, 401, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"the device's credential is revoked\"}}");
    script(&F, 401, "{}");
    script(&F, 401, "{}");
    script(&F, 401, "{}");
    script(&F, 401, "{}");
    CHECK(fl_check_in(&cl) == FL_ERR_UNAUTHORIZED);
    CHECK(fl_next_check_in_ms(&cl, 20) == 10000); /* one refusal: the usual interval */
    CHECK(fl_check_in(&cl) == FL_ERR_UNAUTHORIZED);
    CHECK(fl_next_check_in_ms(&cl, 20) == 20000);
    CHECK(fl_check_in(&cl) == FL_ERR_UNAUTHORIZED);
    CHECK(fl_next_check_in_ms(&cl, 20) == 40000);
    CHECK(fl_check_in(&cl) == FL_ERR_UNAUTHORIZED);
    CHECK(fl_next_check_in_ms(&cl, 20) == 80000);
    CHECK(fl_check_in(&cl) == FL_ERR_UNAUTHORIZED);
    CHECK(fl_next_check_in_ms(&cl, 20) == 80000 && fl_next_check_in_ms(&cl, 40) == 96000);
    /* ... and says nothing meanwhile: no report leaves, the secret stays */
    CHECK(fl_report(&cl, "j", "failed", -1, "rollback") == -1);
    CHECK(F.n_reports == 0);
    CHECK_STR(kv(&F, FL_KV_SECRET), "OLD");
    CHECK(cl.credentials == 0);
    /* re-keyed: the next check-in brings a new credential; back to the interval, reports again */
    script(&F, 200, "{\"update_available\":false,\"credential\":{\"secret\":\"NEW-2\",\"generation\":2,"
                    "\"mqtt_username\":\"pump-07\",\"mqtt_password\":\"pw2\"},\"approval\":\"pending\"}");
    script(&F, 200, "{\"update_available\":false,\"approval\":\"pending\"}");
    CHECK(fl_check_in(&cl) == FL_PENDING_APPROVAL);
    CHECK_STR(F.check_bearer[5], "OLD");
    CHECK_STR(F.check_bearer[6], "NEW-2");
    CHECK_STR(kv(&F, FL_KV_SECRET), "NEW-2");
    CHECK_STR(kv(&F, FL_KV_MQTT_PASS), "pw2");
    CHECK(cl.credentials == 1);
    CHECK(fl_next_check_in_ms(&cl, 20) == 10000);
    CHECK(fl_report(&cl, "j", "failed", -1, "rollback") == 0 && F.n_reports == 1);

    /* unreachable: backs off too; the default interval is 10 min; the cap an hour */
    free(setup(&F, 10, "x"));
    c.interval_secs = 0;
    fl_init(&cl, &c, &p);
    CHECK(fl_next_check_in_ms(&cl, 20) == 600000);
    for (ms = 0; ms < 10; ms++) CHECK(fl_check_in(&cl) == FL_ERR_NETWORK);
    CHECK(fl_next_check_in_ms(&cl, 20) == 3600000);
    c.interval_secs = 86400; /* an interval longer than the cap is never shortened */
    fl_init(&cl, &c, &p);
    CHECK(fl_check_in(&cl) == FL_ERR_NETWORK && fl_check_in(&cl) == FL_ERR_NETWORK);
    CHECK(fl_next_check_in_ms(&cl, 40) == 103680000u);
}

int main(void) {
    if (sodium_init() < 0) return 2;
    crypto_sign_keypair(site_pk, site_sk);
    crypto_sign_keypair(other_pk, other_sk);
    {
        uint8_t d[32];
        crypto_hash_sha256(d, site_pk, 32);
        sodium_bin2hex(site_fp, sizeof site_fp, d, 8);
    }
    test_semver();
    test_messages();
    test_verify();
    test_enrol_download_resume_apply();
    test_progress_rate_limited();
    test_offer_not_nul_terminated();
    test_tampered_image();
    test_rejections_write_nothing();
    test_download_failures();
    test_range_answers();
    test_retries_and_backoff();
    test_error_statuses();
    test_resume_after_reboot();
    test_auth_paths();
    test_after_boot();
    test_mqtt_reports();
    test_init_args();
    test_mdns_txt();
    test_mdns_pick();
    test_discovery_check_in();
    test_tls_declared();
    test_refused_quietly_with_backoff();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
