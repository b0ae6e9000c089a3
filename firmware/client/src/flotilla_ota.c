/* Flotilla reference OTA client: the portable core. See include/flotilla_ota.h. */
#include "../include/flotilla_ota.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_RESP_MAX 3072
#define PERSIST_EVERY (16u * 1024u)

static const char *const ERRORS[] = {
    "",          "bad_offer",     "bad_signature", "wrong_chip",      "wrong_model",
    "not_newer", "secure_version", "min_version",  "too_large",       "download",
    "size_mismatch", "sha256_mismatch", "flash",   "rollback",        "tls",
};

const char *fl_error_str(fl_error e) {
    if ((unsigned)e >= sizeof ERRORS / sizeof ERRORS[0]) return "unknown";
    return ERRORS[e];
}

/* ---------------- SemVer ---------------- */

typedef struct {
    unsigned long num[3];
    const char *pre; /* after '-', up to '+' or end; NULL if none */
    size_t pre_len;
} semver;

static int parse_num(const char **p, unsigned long *out) {
    const char *s = *p;
    unsigned long v = 0;
    if (*s < '0' || *s > '9') return 0;
    if (*s == '0' && s[1] >= '0' && s[1] <= '9') return 0; /* no leading zeros */
    while (*s >= '0' && *s <= '9') {
        if (v > 100000000UL) return 0;
        v = v * 10 + (unsigned long)(*s - '0');
        s++;
    }
    *p = s;
    *out = v;
    return 1;
}

static int semver_parse(const char *s, semver *v) {
    int i;
    if (!s) return 0;
    if (*s == 'v' || *s == 'V') s++;
    for (i = 0; i < 3; i++) {
        if (!parse_num(&s, &v->num[i])) return 0;
        if (i < 2 && *s++ != '.') return 0;
    }
    v->pre = NULL;
    v->pre_len = 0;
    if (*s == '-') {
        const char *start = ++s;
        while (*s && *s != '+') {
            char ch = *s;
            if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' ||
                  ch == '.'))
                return 0;
            s++;
        }
        if (s == start) return 0;
        v->pre = start;
        v->pre_len = (size_t)(s - start);
    }
    if (*s == '+') {
        s++;
        if (!*s) return 0;
        while (*s) s++;
    }
    return *s == '\0';
}

static int all_digits(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return n > 0;
}

/* Compares dot-separated pre-release identifiers per SemVer 2.0 §11. */
static int pre_cmp(const char *a, size_t al, const char *b, size_t bl) {
    size_t i = 0, j = 0;
    while (i < al && j < bl) {
        size_t ie = i, je = j;
        int ad, bd;
        while (ie < al && a[ie] != '.') ie++;
        while (je < bl && b[je] != '.') je++;
        ad = all_digits(a + i, ie - i);
        bd = all_digits(b + j, je - j);
        if (ad && bd) {
            if (ie - i != je - j) return (ie - i) < (je - j) ? -1 : 1;
        } else if (ad != bd) {
            return ad ? -1 : 1;
        }
        {
            size_t n = (ie - i) < (je - j) ? (ie - i) : (je - j);
            int r = memcmp(a + i, b + j, n);
            if (r) return r < 0 ? -1 : 1;
            if (ie - i != je - j) return (ie - i) < (je - j) ? -1 : 1;
        }
        i = ie < al ? ie + 1 : ie;
        j = je < bl ? je + 1 : je;
    }
    if (i < al) return 1;
    if (j < bl) return -1;
    return 0;
}

int fl_semver_cmp(const char *a, const char *b, int *ok) {
    semver x, y;
    int i;
    *ok = semver_parse(a, &x) && semver_parse(b, &y);
    if (!*ok) return 0;
    for (i = 0; i < 3; i++)
        if (x.num[i] != y.num[i]) return x.num[i] < y.num[i] ? -1 : 1;
    if (!x.pre && !y.pre) return 0;
    if (!x.pre) return 1;
    if (!y.pre) return -1;
    return pre_cmp(x.pre, x.pre_len, y.pre, y.pre_len);
}

/* ---------------- JSON helpers ---------------- */

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int copy_str(char *dst, size_t cap, const char *src) {
    size_t n;
    if (!src) return 0;
    n = strlen(src);
    if (n == 0 || n >= cap) return 0;
    memcpy(dst, src, n + 1);
    return 1;
}

static int print_to(cJSON *o, char *buf, size_t cap) {
    int n = -1;
    if (o && cap <= 0x7fffffff && cJSON_PrintPreallocated(o, buf, (int)cap, 0)) n = (int)strlen(buf);
    cJSON_Delete(o);
    return n;
}

static void add_status_fields(cJSON *o, const char *job, const char *state, int progress, const char *error) {
    cJSON_AddStringToObject(o, "job", job);
    cJSON_AddStringToObject(o, "state", state);
    if (progress >= 0) cJSON_AddNumberToObject(o, "progress", progress);
    if (error) cJSON_AddStringToObject(o, "error", error);
}

int fl_report_json(char *buf, size_t cap, const char *device_id, const char *mac, const char *job, const char *state,
                   int progress, const char *error) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    cJSON_AddStringToObject(o, "device_id", device_id);
    cJSON_AddStringToObject(o, "mac", mac);
    add_status_fields(o, job, state, progress, error);
    return print_to(o, buf, cap);
}

int fl_status_json(char *buf, size_t cap, const char *job, const char *state, int progress, const char *error) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    add_status_fields(o, job, state, progress, error);
    return print_to(o, buf, cap);
}

int fl_checkin_json(char *buf, size_t cap, const fl_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    cJSON_AddStringToObject(o, "device_id", cfg->device_id);
    cJSON_AddStringToObject(o, "mac", cfg->mac);
    cJSON_AddStringToObject(o, "model", cfg->model);
    cJSON_AddStringToObject(o, "chip", cfg->chip);
    cJSON_AddStringToObject(o, "version", cfg->version);
    cJSON_AddNumberToObject(o, "secure_version", cfg->secure_version);
    if (cfg->interval_secs) cJSON_AddNumberToObject(o, "interval_secs", cfg->interval_secs);
    /* Over HTTPS the device says so: its offers then name the firmware by https:// as well. */
    if (cfg->server && strncmp(cfg->server, "https://", 8) == 0) cJSON_AddTrueToObject(o, "tls");
    return print_to(o, buf, cap);
}

int fl_presence_json(char *buf, size_t cap, const fl_config *cfg, const char *ip) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    cJSON_AddTrueToObject(o, "online");
    cJSON_AddStringToObject(o, "mac", cfg->mac);
    cJSON_AddStringToObject(o, "model", cfg->model);
    cJSON_AddStringToObject(o, "chip", cfg->chip);
    cJSON_AddStringToObject(o, "version", cfg->version);
    if (ip) cJSON_AddStringToObject(o, "ip", ip);
    return print_to(o, buf, cap);
}

/* ---------------- offer verification ---------------- */

static int is_hex64(const char *s) {
    int i;
    for (i = 0; i < 64; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return 0;
    }
    return s[64] == '\0';
}

static fl_error check_manifest(const fl_config *cfg, const cJSON *m, fl_offer *out) {
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(m, "size");
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(m, "secure_version");
    const cJSON *minv = cJSON_GetObjectItemCaseSensitive(m, "min_version");
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(m, "allow_downgrade");
    const char *version = jstr(m, "version"), *sha = jstr(m, "sha256"), *chip = jstr(m, "chip");
    const char *model = jstr(m, "model");
    int ok, cmp;

    if (!cJSON_IsObject(m) || !copy_str(out->version, sizeof out->version, version) || !sha || strlen(sha) != 64 ||
        !is_hex64(sha) || !chip || !cJSON_IsNumber(size))
        return FL_E_BAD_OFFER;
    if (!(size->valuedouble >= 1 && size->valuedouble <= 4294967295.0) ||
        size->valuedouble != (double)(uint64_t)size->valuedouble)
        return FL_E_BAD_OFFER;
    out->size = (uint64_t)size->valuedouble;
    memcpy(out->sha256, sha, 65);
    out->secure_version = 0;
    if (sv && !cJSON_IsNull(sv)) {
        if (!cJSON_IsNumber(sv) || sv->valuedouble < 0 || sv->valuedouble > 4294967295.0) return FL_E_BAD_OFFER;
        out->secure_version = (uint32_t)sv->valuedouble;
    }
    if (minv && !cJSON_IsNull(minv) && !cJSON_IsString(minv)) return FL_E_BAD_OFFER;

    if (strcmp(chip, cfg->chip) != 0) return FL_E_WRONG_CHIP;
    if (model && cfg->model && strcmp(model, cfg->model) != 0) return FL_E_WRONG_MODEL;
    cmp = fl_semver_cmp(out->version, cfg->version, &ok);
    if (!ok) return FL_E_BAD_OFFER;
    if (cmp <= 0 && !(cmp < 0 && (cfg->allow_downgrade || cJSON_IsTrue(down)))) return FL_E_NOT_NEWER;
    if (out->secure_version < cfg->secure_version) return FL_E_SECURE_VERSION;
    if (cJSON_IsString(minv)) {
        cmp = fl_semver_cmp(cfg->version, minv->valuestring, &ok);
        if (!ok || cmp < 0) return FL_E_MIN_VERSION;
    }
    if (cfg->slot_size && out->size > cfg->slot_size) return FL_E_TOO_LARGE;
    return FL_E_NONE;
}

fl_error fl_verify_offer(const fl_config *cfg, const fl_port *port, const char *json, size_t len, fl_offer *out) {
    cJSON *offer, *manifest = NULL;
    const char *mj, *sig64;
    uint8_t sig[FL_SIG_LEN + 4];
    fl_error e = FL_E_BAD_OFFER;

    memset(out, 0, sizeof *out);
    offer = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(offer)) goto done;
    mj = jstr(offer, "manifest_json");
    sig64 = jstr(offer, "signature");
    if (!copy_str(out->job, sizeof out->job, jstr(offer, "job")) ||
        !copy_str(out->url, sizeof out->url, jstr(offer, "url")) || !mj || !sig64)
        goto done;
    /* 1. The signature over the exact manifest bytes, before anything else is believed. */
    e = FL_E_BAD_SIGNATURE;
    if (strlen(sig64) > 100 || port->base64_decode(port->ctx, sig64, sig, sizeof sig) != FL_SIG_LEN) goto done;
    if (port->ed25519_verify(port->ctx, sig, (const uint8_t *)mj, strlen(mj), cfg->pubkey) != 0) goto done;
    /* 2. Only the signed manifest's fields count. */
    manifest = cJSON_Parse(mj);
    e = check_manifest(cfg, manifest, out);
done:
    cJSON_Delete(manifest);
    cJSON_Delete(offer);
    return e;
}

/* ---------------- discovery (mDNS) ---------------- */

static int lower(int ch) {
    return (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch;
}

int fl_mdns_add_txt(fl_mdns_service *s, const char *key, size_t key_len, const char *value, size_t value_len) {
    size_t used = s->txt_len;
    if (!key || !key_len || (value_len && !value) || memchr(key, '=', key_len) || memchr(key, '\0', key_len) ||
        (value_len && memchr(value, '\0', value_len)) || used > FL_MDNS_TXT_CAP ||
        key_len + value_len + 2 > FL_MDNS_TXT_CAP - used)
        return -1;
    memcpy(s->txt + used, key, key_len);
    s->txt[used + key_len] = '=';
    if (value_len) memcpy(s->txt + used + key_len + 1, value, value_len);
    s->txt[used + key_len + 1 + value_len] = '\0';
    s->txt_len = (uint16_t)(used + key_len + value_len + 2);
    return 0;
}

const char *fl_mdns_txt(const fl_mdns_service *s, const char *key) {
    size_t klen = strlen(key), end = s->txt_len < FL_MDNS_TXT_CAP ? s->txt_len : FL_MDNS_TXT_CAP, i = 0;
    while (i < end) {
        const char *e = s->txt + i, *nul = memchr(e, '\0', end - i);
        size_t j;
        if (!nul) return NULL; /* unterminated: not from fl_mdns_add_txt */
        for (j = 0; j < klen && e + j < nul && lower(e[j]) == lower(key[j]); j++) {
        }
        if (j == klen && e + klen < nul && e[klen] == '=') return e + klen + 1; /* keys: any case (RFC 6763) */
        i = (size_t)(nul - s->txt) + 1;
    }
    return NULL;
}

static int hex_nibble(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    ch = (char)lower(ch);
    return (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
}

/* The site key's id as the engine advertises it (`fp`): the first 8 bytes of its SHA-256, hex. */
static int key_id(const fl_port *p, const uint8_t pk[FL_PUBKEY_LEN], char out[17]) {
    fl_sha256_state st;
    uint8_t d[FL_SHA256_LEN];
    int i;
    if (p->sha256_init(p->ctx, &st) != 0 || p->sha256_update(p->ctx, &st, pk, FL_PUBKEY_LEN) != 0 ||
        p->sha256_final(p->ctx, &st, d) != 0)
        return -1;
    for (i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
    return 0;
}

/* Whether the "sha256//<base64>" pins in `pin` (libcurl's form, ';'-separated) include the key
 * whose SHA-256 is `fps` (hex): 1 yes, 0 no, -1 `pin` has no such pin (a PEM: the TLS layer
 * alone checks it). */
static int pin_is(const fl_port *p, const char *pin, const char *fps) {
    uint8_t want[FL_SHA256_LEN], got[FL_SHA256_LEN + 4];
    char b64[64];
    int any = 0, i;
    const char *q;
    for (i = 0; fps && i < 2 * FL_SHA256_LEN; i++) {
        int hi = hex_nibble(fps[i]);
        if (hi < 0) break;
        if (i & 1) want[i / 2] = (uint8_t)(want[i / 2] | hi);
        else want[i / 2] = (uint8_t)(hi << 4);
    }
    if (!fps || i != 2 * FL_SHA256_LEN || fps[i]) fps = NULL;
    while ((q = strstr(pin, "sha256//")) != NULL) {
        size_t n = strcspn(q + 8, ";");
        any = 1;
        if (fps && n < sizeof b64) {
            memcpy(b64, q + 8, n);
            b64[n] = '\0';
            if (p->base64_decode(p->ctx, b64, got, sizeof got) == FL_SHA256_LEN && memcmp(got, want, sizeof want) == 0)
                return 1;
        }
        pin = q + 8 + n;
    }
    return any ? 0 : -1;
}

static int valid_ipv4(const char *a) {
    size_t n = strlen(a);
    return n >= 7 && n <= 15 && strspn(a, "0123456789.") == n;
}

int fl_mdns_pick(const fl_config *cfg, const fl_port *port, const fl_mdns_service *found, int n, char *url,
                 size_t cap) {
    char id[17];
    int i;
    if (key_id(port, cfg->pubkey, id) != 0) return -1;
    for (i = 0; i < n && i < FL_MDNS_MAX; i++) {
        const fl_mdns_service *s = &found[i];
        const char *api = fl_mdns_txt(s, "api"), *fp = fl_mdns_txt(s, "fp"), *tls = fl_mdns_txt(s, "tls");
        char addr[sizeof s->addr + 1];
        unsigned long tport = 0;
        int w;
        memcpy(addr, s->addr, sizeof s->addr);
        addr[sizeof s->addr] = '\0';
        /* The API this client speaks, a server signing with our site key, an address to use. */
        if (!api || strcmp(api, "/api/v1") != 0 || !fp || strcmp(fp, id) != 0 || !valid_ipv4(addr)) continue;
        if (cfg->tls_pin) {
            /* Pinned: HTTPS only (an answer cannot talk the device down to plain HTTP), and
             * the advertised key must be the pinned one where the pin says which key it is.
             * The fingerprint advertised is only compared, never trusted in place of the pin. */
            char *end = NULL;
            if (tls) tport = strtoul(tls, &end, 10);
            if (!tls || !*tls || *end || tport < 1 || tport > 65535) continue;
            if (pin_is(port, cfg->tls_pin, fl_mdns_txt(s, "fps")) == 0) continue;
            w = snprintf(url, cap, "https://%s:%lu", addr, tport);
        } else {
            if (!s->port) continue;
            w = snprintf(url, cap, "http://%s:%u", addr, (unsigned)s->port);
        }
        if (w > 0 && (size_t)w < cap) return i;
    }
    return -1;
}

/* One buffer for the check-in answer, or for the instances a discovery found (never both at
 * once): one client per device, kept off the stack. */
static union {
    char resp[CHECK_RESP_MAX];
    fl_mdns_service found[FL_MDNS_MAX];
} s_buf;

int fl_discover(fl_client *c) {
    const fl_port *p = c->port;
    int n;
    if (!p->mdns_query) return -1;
    memset(s_buf.found, 0, sizeof s_buf.found);
    n = p->mdns_query(p->ctx, FL_MDNS_SERVICE, FL_MDNS_PROTO, c->cfg.mdns_timeout_ms ? c->cfg.mdns_timeout_ms : 3000,
                      s_buf.found, FL_MDNS_MAX);
    if (n <= 0 || fl_mdns_pick(&c->cfg, p, s_buf.found, n, c->found, sizeof c->found) < 0) return -1;
    c->cfg.server = c->found;
    return 0;
}

/* ---------------- the client ---------------- */

static char *url_join(char *buf, size_t cap, const char *base, const char *path) {
    int n = snprintf(buf, cap, "%s%s", base, path);
    return (n < 0 || (size_t)n >= cap) ? NULL : buf;
}

int fl_init(fl_client *c, const fl_config *cfg, const fl_port *port) {
    if (!c || !cfg || !port || (!cfg->server && !port->mdns_query) || !cfg->device_id || !cfg->mac || !cfg->chip || !cfg->version ||
        !port->http_post_json || !port->http_get || !port->flash_begin || !port->flash_write ||
        !port->flash_commit || !port->flash_abort || !port->now_ms || !port->kv_get || !port->kv_set ||
        !port->sha256_init || !port->sha256_update || !port->sha256_final || !port->ed25519_verify ||
        !port->base64_decode)
        return -1;
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    if (!c->cfg.progress_interval_ms) c->cfg.progress_interval_ms = 2000;
    if (!c->cfg.max_retries) c->cfg.max_retries = 5;
    c->port = port;
    if (port->kv_get(port->ctx, FL_KV_SECRET, c->secret, sizeof c->secret) <= 0) c->secret[0] = '\0';
    return 0;
}

static const char *bearer(const fl_client *c) {
    return c->secret[0] ? c->secret : NULL;
}

int fl_report(fl_client *c, const char *job, const char *state, int progress, const char *error) {
    char body[384], url[FL_URL_MAX], resp[128];
    int status = 0;
    const fl_port *p = c->port;
    if (c->refused) return -1; /* refused (revoked): say nothing until a check-in passes */
    if (c->cfg.report_via_mqtt && p->mqtt_publish) {
        char topic[FL_ID_MAX + 32];
        if (fl_status_json(body, sizeof body, job, state, progress, error) < 0) return -1;
        snprintf(topic, sizeof topic, "flotilla/%s/status/ota", c->cfg.device_id);
        return p->mqtt_publish(p->ctx, topic, body, 0);
    }
    if (!c->cfg.server && fl_discover(c) != 0) return -1;
    if (fl_report_json(body, sizeof body, c->cfg.device_id, c->cfg.mac, job, state, progress, error) < 0 ||
        !url_join(url, sizeof url, c->cfg.server, "/api/v1/report"))
        return -1;
    if (p->http_post_json(p->ctx, url, bearer(c), body, resp, sizeof resp, &status) != 0) return -1;
    return status == 200 ? 0 : -1;
}

static void store_credential(fl_client *c, const cJSON *cred) {
    const fl_port *p = c->port;
    const char *secret = jstr(cred, "secret");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(cred, "generation");
    char num[16];
    if (!secret || !copy_str(c->secret, sizeof c->secret, secret)) return;
    p->kv_set(p->ctx, FL_KV_SECRET, c->secret);
    if (cJSON_IsNumber(gen)) {
        snprintf(num, sizeof num, "%d", gen->valueint);
        p->kv_set(p->ctx, FL_KV_GEN, num);
    }
    p->kv_set(p->ctx, FL_KV_MQTT_USER, jstr(cred, "mqtt_username"));
    p->kv_set(p->ctx, FL_KV_MQTT_PASS, jstr(cred, "mqtt_password"));
    c->credentials++;
}

static void clear_download(const fl_port *p);

/* One POST /api/v1/check; fills resp. Returns the HTTP status or -1. */
static int post_check(fl_client *c, char *resp, size_t cap) {
    char body[512], url[FL_URL_MAX];
    int status = 0;
    if (fl_checkin_json(body, sizeof body, &c->cfg) < 0 || !url_join(url, sizeof url, c->cfg.server, "/api/v1/check"))
        return -1;
    if (c->port->http_post_json(c->port->ctx, url, bearer(c), body, resp, cap, &status) != 0) return -1;
    return status;
}

static fl_result check_in(fl_client *c) {
    char *resp = s_buf.resp;
    int attempt, status, n;
    /* A download a reboot interrupted comes first: the engine does not offer its job again. */
    if (c->port->flash_read && (n = c->port->kv_get(c->port->ctx, FL_KV_DL_OFFER, resp, CHECK_RESP_MAX)) > 0) {
        fl_result r = fl_handle_offer(c, resp, (size_t)n);
        if (r != FL_OK_REBOOT) clear_download(c->port);
        if (r != FL_OK_IGNORED) return r;
    }
    for (attempt = 0; attempt < 2; attempt++) {
        cJSON *ans, *cred;
        status = post_check(c, resp, CHECK_RESP_MAX);
        if (status < 0) {
            /* Unreachable (or not the pinned server): a server found by mDNS is looked up again
             * next time, it may have moved. */
            if (c->cfg.server == c->found) c->cfg.server = NULL;
            return FL_ERR_NETWORK;
        }
        if (status == 401) {
            /* Refused: revoked, or a wrong secret. The secret is kept (a re-key brings a new
             * credential in the answer to the next check-in by itself), and nothing is reported
             * until a check-in passes again. */
            c->refused = 1;
            return FL_ERR_UNAUTHORIZED;
        }
        if (status != 200) return FL_ERR_NETWORK;
        c->refused = 0;
        ans = cJSON_Parse(resp);
        if (!cJSON_IsObject(ans)) {
            cJSON_Delete(ans);
            return FL_ERR_NETWORK;
        }
        cred = cJSON_GetObjectItemCaseSensitive(ans, "credential");
        if (cJSON_IsObject(cred) && (!c->secret[0] || c->cfg.allow_reenrol)) {
            /* Enrolled (or re-keyed): keep the new secret and check in again at once with it. */
            store_credential(c, cred);
            cJSON_Delete(ans);
            continue;
        }
        if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ans, "approval"))) {
            cJSON_Delete(ans);
            return FL_PENDING_APPROVAL;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ans, "update_available"))) {
            cJSON_Delete(ans);
            return FL_OK_NO_UPDATE;
        }
        cJSON_Delete(ans);
        return fl_handle_offer(c, resp, strlen(resp));
    }
    return FL_ERR_UNAUTHORIZED;
}

fl_result fl_check_in(fl_client *c) {
    fl_result r = (!c->cfg.server && fl_discover(c) != 0) ? FL_ERR_NETWORK : check_in(c);
    if (r == FL_ERR_NETWORK || r == FL_ERR_UNAUTHORIZED) {
        if (c->failures < 0xffff) c->failures++;
    } else {
        c->failures = 0;
    }
    return r;
}

uint32_t fl_next_check_in_ms(const fl_client *c, uint32_t random) {
    uint64_t base = (uint64_t)(c->cfg.interval_secs ? c->cfg.interval_secs : 600) * 1000u, ms = base;
    uint32_t doublings = c->failures > 1 ? c->failures - 1 : 0;
    if (doublings) {
        /* Refused or unreachable again: back off, up to 8x the interval (at most an hour,
         * unless the interval itself is longer). */
        ms = base << (doublings < 3 ? doublings : 3);
        if (ms > 3600000u) ms = base > 3600000u ? base : 3600000u;
    }
    ms = ms * (80u + random % 41u) / 100u; /* +-20 % */
    return ms > 0xffffffffu ? 0xffffffffu : (uint32_t)ms;
}

static void progress(fl_client *c, int force) {
    uint64_t now = c->port->now_ms(c->port->ctx);
    int pct = c->size ? (int)(c->offset * 100 / c->size) : 0;
    if (!force && (pct == c->last_progress || now - c->last_progress_ms < c->cfg.progress_interval_ms)) return;
    c->last_progress = pct;
    c->last_progress_ms = now;
    fl_report(c, c->cur->job, "downloading", pct, NULL);
}

static void persist_offset(fl_client *c) {
    char num[24];
    if (!c->port->flash_read || c->offset == c->persisted_offset) return;
    snprintf(num, sizeof num, "%llu", (unsigned long long)c->offset);
    c->port->kv_set(c->port->ctx, FL_KV_DL_OFF, num);
    c->persisted_offset = c->offset;
}

static int sink(void *ctx, const uint8_t *data, size_t len) {
    fl_client *c = (fl_client *)ctx;
    const fl_port *p = c->port;
    if (c->range_check) {
        c->range_check = 0;
        if (c->offset > 0 && c->http_status == 200) {
            /* The server ignored Range and sends the file from its start: start over. */
            p->sha256_init(p->ctx, &c->sha);
            c->offset = 0;
            c->persisted_offset = 0;
            p->kv_set(p->ctx, FL_KV_DL_OFF, NULL);
        } else if (c->offset > 0 && c->http_status != 206) {
            c->sink_error = FL_E_DOWNLOAD;
            return 1;
        } else if (c->http_status != 200 && c->http_status != 206) {
            return 1; /* an error body is not firmware: nothing written, the status decides */
        }
    }
    if (len > c->size - c->offset) {
        c->sink_error = FL_E_SIZE_MISMATCH;
        return 1;
    }
    if (p->flash_write(p->ctx, c->offset, data, len) != 0) {
        c->sink_error = FL_E_FLASH;
        return 1;
    }
    p->sha256_update(p->ctx, &c->sha, data, len);
    c->offset += len;
    if (c->offset - c->persisted_offset >= PERSIST_EVERY) persist_offset(c);
    progress(c, 0);
    return 0;
}

/* Re-hashes what an earlier boot already wrote, so the download can go on from there. */
static uint64_t resume_point(fl_client *c, const fl_offer *o) {
    const fl_port *p = c->port;
    char buf[24], job[FL_JOB_MAX];
    uint8_t chunk[256];
    uint64_t off, done = 0;
    char *end;
    if (!p->flash_read || p->kv_get(p->ctx, FL_KV_DL_JOB, job, sizeof job) <= 0 || strcmp(job, o->job) != 0 ||
        p->kv_get(p->ctx, FL_KV_DL_OFF, buf, sizeof buf) <= 0)
        return 0;
    off = strtoull(buf, &end, 10);
    if (*end || off >= o->size) return 0;
    while (done < off) {
        size_t n = (off - done) < sizeof chunk ? (size_t)(off - done) : sizeof chunk;
        if (p->flash_read(p->ctx, done, chunk, n) != 0) {
            p->sha256_init(p->ctx, &c->sha);
            return 0;
        }
        p->sha256_update(p->ctx, &c->sha, chunk, n);
        done += n;
    }
    return off;
}

static void clear_download(const fl_port *p) {
    p->kv_set(p->ctx, FL_KV_DL_OFFER, NULL);
    p->kv_set(p->ctx, FL_KV_DL_JOB, NULL);
    p->kv_set(p->ctx, FL_KV_DL_OFF, NULL);
}

static fl_result fail(fl_client *c, const fl_offer *o, fl_error e) {
    c->port->flash_abort(c->port->ctx);
    clear_download(c->port);
    c->port->kv_set(c->port->ctx, FL_KV_DONE_JOB, o->job);
    fl_report(c, o->job, "failed", -1, fl_error_str(e));
    return FL_FAILED;
}

static fl_result download_and_apply(fl_client *c, const fl_offer *o) {
    const fl_port *p = c->port;
    uint8_t digest[FL_SHA256_LEN];
    char hex[65];
    uint32_t attempt;
    int i;

    c->cur = o;
    c->size = o->size;
    c->sink_error = 0;
    c->last_progress = -1;
    p->sha256_init(p->ctx, &c->sha);
    c->offset = resume_point(c, o);
    c->persisted_offset = c->offset;
    if (p->flash_begin(p->ctx, o->size, c->offset > 0) != 0) return fail(c, o, FL_E_FLASH);
    p->kv_set(p->ctx, FL_KV_DL_JOB, o->job);
    progress(c, 1);

    for (attempt = 0; c->offset < c->size; attempt++) {
        int rc, status;
        uint64_t before = c->offset;
        if (attempt > c->cfg.max_retries) return fail(c, o, FL_E_DOWNLOAD);
        if (attempt && p->sleep_ms) p->sleep_ms(p->ctx, 500u << (attempt < 5 ? attempt : 5));
        c->http_status = 0;
        c->range_check = 1;
        rc = p->http_get(p->ctx, o->url, bearer(c), c->offset, sink, c, &c->http_status);
        status = c->http_status;
        if (c->sink_error) return fail(c, o, (fl_error)c->sink_error);
        if (rc == FL_HTTP_TLS_REFUSED) return fail(c, o, FL_E_TLS); /* not the pinned server: no retry */
        if (status != 0 && status != 200 && status != 206) {
            /* An error answer, whatever the port did with its body, is no short transfer. A server
             * error, 408 or 429 is retried like a dropped connection; any other will not change. */
            if ((status < 500 || status > 599) && status != 408 && status != 429) return fail(c, o, FL_E_DOWNLOAD);
            rc = -1;
        }
        if (rc == 0 && c->offset < c->size) return fail(c, o, FL_E_SIZE_MISMATCH);
        if (c->offset != before) attempt = 0; /* progress was made: a fresh set of retries */
        persist_offset(c);
    }
    if (p->sha256_final(p->ctx, &c->sha, digest) != 0) return fail(c, o, FL_E_FLASH);
    for (i = 0; i < FL_SHA256_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    if (strcmp(hex, o->sha256) != 0) return fail(c, o, FL_E_SHA256_MISMATCH);
    progress(c, 1);

    fl_report(c, o->job, "installing", -1, NULL);
    if (p->flash_commit(p->ctx, o->version) != 0) return fail(c, o, FL_E_FLASH);
    clear_download(p);
    p->kv_set(p->ctx, FL_KV_DONE_JOB, o->job);
    p->kv_set(p->ctx, FL_KV_PENDING_JOB, o->job);
    p->kv_set(p->ctx, FL_KV_PENDING_VER, o->version);
    fl_report(c, o->job, "rebooting", -1, NULL);
    return FL_OK_REBOOT;
}

fl_result fl_handle_offer(fl_client *c, const char *json, size_t len) {
    fl_offer o;
    char done[FL_JOB_MAX];
    fl_error e = fl_verify_offer(&c->cfg, c->port, json, len, &o);
    if (o.job[0] && c->port->kv_get(c->port->ctx, FL_KV_DONE_JOB, done, sizeof done) > 0 && strcmp(done, o.job) == 0)
        return FL_OK_IGNORED; /* act once per job */
    if (e != FL_E_NONE) {
        if (!o.job[0]) return FL_REJECTED; /* nothing to report against */
        c->port->kv_set(c->port->ctx, FL_KV_DONE_JOB, o.job);
        fl_report(c, o.job, "rejected", -1, fl_error_str(e));
        return FL_REJECTED;
    }
    /* Where the slot can be read back, keep the offer so a reboot can finish this download. */
    if (c->port->flash_read && !memchr(json, '\0', len)) {
        char *copy = (char *)malloc(len + 1); /* json need not be NUL-terminated (MQTT payloads) */
        if (copy) {
            memcpy(copy, json, len);
            copy[len] = '\0';
            c->port->kv_set(c->port->ctx, FL_KV_DL_OFFER, copy);
            free(copy);
        }
    }
    return download_and_apply(c, &o);
}

int fl_after_boot(fl_client *c, int health_ok) {
    const fl_port *p = c->port;
    char job[FL_JOB_MAX], ver[FL_VERSION_MAX];
    int r;
    if (p->kv_get(p->ctx, FL_KV_PENDING_JOB, job, sizeof job) <= 0) return 0;
    if (p->kv_get(p->ctx, FL_KV_PENDING_VER, ver, sizeof ver) <= 0) ver[0] = '\0';
    p->kv_set(p->ctx, FL_KV_PENDING_JOB, NULL);
    p->kv_set(p->ctx, FL_KV_PENDING_VER, NULL);
    if (health_ok && strcmp(ver, c->cfg.version) == 0) {
        if (p->flash_confirm) p->flash_confirm(p->ctx, 1);
        return 1; /* the next check-in (or presence) carries the new version */
    }
    if (p->flash_confirm) p->flash_confirm(p->ctx, 0);
    r = fl_report(c, job, "failed", -1, fl_error_str(FL_E_ROLLBACK));
    (void)r;
    return -1;
}
