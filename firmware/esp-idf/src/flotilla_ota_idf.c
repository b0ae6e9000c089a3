/* ESP-IDF port of the Flotilla OTA core. See include/flotilla_ota_idf.h. */
#include "flotilla_ota_idf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_http_client.h"
#include "esp_mac.h"
#include "esp_ota_ops.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/task.h"
#include "mbedtls/base64.h"
#include "mbedtls/sha256.h"
#include "mdns.h"
#include "nvs.h"
#include "sdkconfig.h"
#include "sodium.h"

typedef struct {
    const char *cert_pem;
    esp_ota_handle_t ota;
    const esp_partition_t *part;
    nvs_handle_t nvs;
    esp_mqtt_client_handle_t mqtt;
    /* the MQTT client this port runs itself (cfg.mqtt_uri): its login, topics and presence */
    int own_mqtt;
    uint32_t mqtt_login; /* fl_client.credentials when it logged in */
    char mqtt_user[96], mqtt_pass[128];
    char status_topic[FL_ID_MAX + 20], cmd_topic[FL_ID_MAX + 20];
    char presence[384];
    QueueHandle_t offers; /* malloc'd NUL-terminated payloads of cmd/ota, for the OTA task */
} idf_port;

#define OFFER_MAX 4096 /* an offer is about 1.5 KiB; the client's buffer holds it unfragmented */

typedef char sha_state_fits[sizeof(mbedtls_sha256_context) <= sizeof(fl_sha256_state) ? 1 : -1];

static idf_port s_port;
static fl_port s_fl;
static fl_client s_client;
static flotilla_ota_idf_config s_cfg;

static esp_http_client_handle_t open_client(idf_port *p, const char *url, esp_http_client_method_t method,
                                            const char *bearer) {
    esp_http_client_config_t c;
    esp_http_client_handle_t h;
    char auth[128];
    memset(&c, 0, sizeof c);
    c.url = url;
    c.method = method;
    c.cert_pem = p->cert_pem; /* pinned: only this certificate (or CA) is trusted */
    c.timeout_ms = 30000;
    c.buffer_size = 2048;
    h = esp_http_client_init(&c);
    if (h && bearer) {
        snprintf(auth, sizeof auth, "Bearer %s", bearer);
        esp_http_client_set_header(h, "Authorization", auth);
    }
    return h;
}

static int post_json(void *ctx, const char *url, const char *bearer, const char *body, char *resp, size_t cap,
                     int *status) {
    esp_http_client_handle_t h = open_client(ctx, url, HTTP_METHOD_POST, bearer);
    int len = (int)strlen(body), n, got = 0;
    if (!h) return -1;
    esp_http_client_set_header(h, "Content-Type", "application/json");
    if (esp_http_client_open(h, len) != ESP_OK || esp_http_client_write(h, body, len) != len ||
        esp_http_client_fetch_headers(h) < 0) {
        esp_http_client_cleanup(h);
        return -1;
    }
    *status = esp_http_client_get_status_code(h);
    while (got < (int)cap - 1 && (n = esp_http_client_read(h, resp + got, (int)cap - 1 - got)) > 0) got += n;
    resp[got] = '\0';
    esp_http_client_close(h);
    esp_http_client_cleanup(h);
    return 0;
}

static int http_get(void *ctx, const char *url, const char *bearer, uint64_t offset, fl_sink_fn sink, void *sctx,
                    int *status) {
    static char buf[1024];
    esp_http_client_handle_t h = open_client(ctx, url, HTTP_METHOD_GET, bearer);
    char range[40];
    int n, rc = 0;
    if (!h) return -1;
    if (offset) {
        snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)offset);
        esp_http_client_set_header(h, "Range", range);
    }
    if (esp_http_client_open(h, 0) != ESP_OK || esp_http_client_fetch_headers(h) < 0) {
        esp_http_client_cleanup(h);
        return -1;
    }
    *status = esp_http_client_get_status_code(h);
    if (*status == 200 || *status == 206) {
        while ((n = esp_http_client_read(h, buf, sizeof buf)) > 0)
            if (sink(sctx, (const uint8_t *)buf, (size_t)n)) {
                rc = -1;
                break;
            }
        if (n < 0 || !esp_http_client_is_complete_data_received(h)) rc = -1;
    }
    esp_http_client_close(h);
    esp_http_client_cleanup(h);
    return rc;
}

/* No resume across a reboot on this port: esp_ota_begin erases the slot (flash_read is NULL). */
static int flash_begin(void *ctx, uint64_t size, int resume) {
    idf_port *p = ctx;
    (void)resume;
    p->part = esp_ota_get_next_update_partition(NULL);
    if (!p->part || size > p->part->size) return -1;
    return esp_ota_begin(p->part, (size_t)size, &p->ota) == ESP_OK ? 0 : -1;
}
static int flash_write(void *ctx, uint64_t off, const uint8_t *d, size_t n) {
    idf_port *p = ctx;
    return esp_ota_write_with_offset(p->ota, d, n, (uint32_t)off) == ESP_OK ? 0 : -1;
}
static int flash_commit(void *ctx, const char *version) {
    idf_port *p = ctx;
    (void)version;
    if (esp_ota_end(p->ota) != ESP_OK) return -1; /* also checks the image as the bootloader will */
    p->ota = 0;
    return esp_ota_set_boot_partition(p->part) == ESP_OK ? 0 : -1;
}
static void flash_abort(void *ctx) {
    idf_port *p = ctx;
    if (p->ota) esp_ota_abort(p->ota);
    p->ota = 0;
}
static int flash_confirm(void *ctx, int valid) {
    (void)ctx;
    if (valid) return esp_ota_mark_app_valid_cancel_rollback() == ESP_OK ? 0 : -1;
    return esp_ota_mark_app_invalid_rollback_and_reboot() == ESP_OK ? 0 : -1; /* reboots */
}
static uint64_t now_ms(void *ctx) {
    (void)ctx;
    return (uint64_t)(esp_timer_get_time() / 1000);
}
static void sleep_ms(void *ctx, uint32_t ms) {
    (void)ctx;
    vTaskDelay(pdMS_TO_TICKS(ms));
}
static int kv_get(void *ctx, const char *key, char *buf, size_t cap) {
    idf_port *p = ctx;
    size_t len = cap;
    if (nvs_get_str(p->nvs, key, buf, &len) != ESP_OK) return -1;
    return (int)strlen(buf);
}
static int kv_set(void *ctx, const char *key, const char *value) {
    idf_port *p = ctx;
    esp_err_t e = value ? nvs_set_str(p->nvs, key, value) : nvs_erase_key(p->nvs, key);
    if (e != ESP_OK && !(value == NULL && e == ESP_ERR_NVS_NOT_FOUND)) return -1;
    return nvs_commit(p->nvs) == ESP_OK ? 0 : -1;
}
static int sha_init(void *ctx, fl_sha256_state *st) {
    mbedtls_sha256_context *s = (mbedtls_sha256_context *)(void *)st->bytes;
    (void)ctx;
    mbedtls_sha256_init(s);
    return mbedtls_sha256_starts(s, 0);
}
static int sha_update(void *ctx, fl_sha256_state *st, const uint8_t *d, size_t n) {
    (void)ctx;
    return mbedtls_sha256_update((mbedtls_sha256_context *)(void *)st->bytes, d, n);
}
static int sha_final(void *ctx, fl_sha256_state *st, uint8_t out[FL_SHA256_LEN]) {
    mbedtls_sha256_context *s = (mbedtls_sha256_context *)(void *)st->bytes;
    int rc = mbedtls_sha256_finish(s, out);
    (void)ctx;
    mbedtls_sha256_free(s);
    return rc;
}
static int ed_verify(void *ctx, const uint8_t sig[FL_SIG_LEN], const uint8_t *m, size_t n,
                     const uint8_t pk[FL_PUBKEY_LEN]) {
    (void)ctx;
    return crypto_sign_verify_detached(sig, m, n, pk);
}
static int b64_decode(void *ctx, const char *in, uint8_t *out, size_t cap) {
    size_t len = 0;
    (void)ctx;
    if (mbedtls_base64_decode(out, cap, &len, (const unsigned char *)in, strlen(in)) != 0) return -1;
    return (int)len;
}
static int mqtt_publish(void *ctx, const char *topic, const char *payload, int retain) {
    idf_port *p = ctx;
    return esp_mqtt_client_publish(p->mqtt, topic, payload, 0, 1, retain) >= 0 ? 0 : -1;
}

/* Discovery with the mdns component: PTR, then the instances' SRV, TXT and A (mdns_init is
 * called at start when no server is configured). */
static int mdns_query(void *ctx, const char *service, const char *proto, uint32_t timeout_ms, fl_mdns_service *out,
                      int max) {
    mdns_result_t *results = NULL, *r;
    int n = 0;
    (void)ctx;
    if (mdns_query_ptr(service, proto, timeout_ms, (size_t)max, &results) != ESP_OK) return 0;
    for (r = results; r && n < max; r = r->next) {
        const mdns_ip_addr_t *a;
        fl_mdns_service *s = &out[n];
        size_t i;
        memset(s, 0, sizeof *s);
        for (a = r->addr; a; a = a->next)
            if (a->addr.type == ESP_IPADDR_TYPE_V4 && esp_ip4addr_ntoa(&a->addr.u_addr.ip4, s->addr, sizeof s->addr))
                break;
        if (!a || !r->port) continue;
        s->port = r->port;
        for (i = 0; i < r->txt_count; i++) {
            const mdns_txt_item_t *t = &r->txt[i];
            size_t vlen = t->value ? (r->txt_value_len ? r->txt_value_len[i] : strlen(t->value)) : 0;
            if (t->key) fl_mdns_add_txt(s, t->key, strlen(t->key), t->value, vlen);
        }
        n++;
    }
    mdns_query_results_free(results);
    return n;
}

/* MQTT events arrive on the MQTT client's task: an offer is copied and queued for the OTA task,
 * which alone touches the core. */
static void on_mqtt(void *arg, esp_event_base_t base, int32_t id, void *data) {
    idf_port *p = arg;
    esp_mqtt_event_handle_t ev = data;
    (void)base;
    if (id == MQTT_EVENT_CONNECTED) {
        /* at every connect: its own command topic, and its presence (retained) */
        esp_mqtt_client_subscribe(p->mqtt, p->cmd_topic, 1);
        esp_mqtt_client_publish(p->mqtt, p->status_topic, p->presence, 0, 1, 1);
    } else if (id == MQTT_EVENT_DATA && ev->topic && ev->topic_len == (int)strlen(p->cmd_topic) &&
               memcmp(ev->topic, p->cmd_topic, (size_t)ev->topic_len) == 0 && ev->data_len > 0 &&
               ev->data_len == ev->total_data_len && ev->data_len < OFFER_MAX) {
        char *copy = malloc((size_t)ev->data_len + 1);
        if (!copy) return;
        memcpy(copy, ev->data, (size_t)ev->data_len);
        copy[ev->data_len] = '\0';
        if (xQueueSend(p->offers, &copy, 0) != pdPASS) free(copy); /* one waiting is enough */
    }
}

/* Logs in to the broker with the device's own login from its enrolment (none yet: not now),
 * with a retained Last Will {"online":false} on its status topic. */
static void start_mqtt(idf_port *p) {
    static const char *offline = "{\"online\":false}";
    esp_mqtt_client_config_t mc;
    if (p->mqtt) {
        esp_mqtt_client_stop(p->mqtt);
        esp_mqtt_client_destroy(p->mqtt);
        p->mqtt = NULL;
        s_client.cfg.report_via_mqtt = 0;
    }
    if (kv_get(p, FL_KV_MQTT_USER, p->mqtt_user, sizeof p->mqtt_user) <= 0 ||
        kv_get(p, FL_KV_MQTT_PASS, p->mqtt_pass, sizeof p->mqtt_pass) <= 0)
        return;
    memset(&mc, 0, sizeof mc);
    mc.broker.address.uri = s_cfg.mqtt_uri;
    mc.credentials.username = p->mqtt_user;
    mc.credentials.client_id = s_client.cfg.device_id;
    mc.credentials.authentication.password = p->mqtt_pass;
    mc.session.last_will.topic = p->status_topic;
    mc.session.last_will.msg = offline;
    mc.session.last_will.qos = 1;
    mc.session.last_will.retain = 1;
    mc.buffer.size = OFFER_MAX;
    p->mqtt = esp_mqtt_client_init(&mc);
    if (!p->mqtt) return;
    esp_mqtt_client_register_event(p->mqtt, MQTT_EVENT_ANY, on_mqtt, p);
    if (esp_mqtt_client_start(p->mqtt) != ESP_OK) return;
    p->mqtt_login = s_client.credentials;
    s_client.cfg.report_via_mqtt = 1;
}

static void ota_task(void *arg) {
    idf_port *p = &s_port;
    int healthy;
    (void)arg;
    healthy = s_cfg.health_check ? s_cfg.health_check() : 1;
    fl_after_boot(&s_client, healthy);
    for (;;) {
        char *offer = NULL;
        fl_result r = fl_check_in(&s_client);
        if (r == FL_OK_REBOOT) esp_restart();
        /* enrolled (or re-keyed: a new login) and let in: (re)connect with its own login */
        if (p->own_mqtt && (r == FL_OK_NO_UPDATE || r == FL_OK_IGNORED) &&
            (!p->mqtt || p->mqtt_login != s_client.credentials))
            start_mqtt(p);
        /* the interval (+-20 %, longer after refusals), or until an offer is pushed */
        if (p->offers && xQueueReceive(p->offers, &offer, pdMS_TO_TICKS(fl_next_check_in_ms(&s_client, esp_random()))) ==
                             pdPASS) {
            r = fl_handle_offer(&s_client, offer, strlen(offer));
            free(offer);
            if (r == FL_OK_REBOOT) esp_restart();
        } else if (!p->offers) {
            vTaskDelay(pdMS_TO_TICKS(fl_next_check_in_ms(&s_client, esp_random())));
        }
    }
}

esp_err_t flotilla_ota_start(const flotilla_ota_idf_config *cfg) {
    static char mac[18], id[24];
    static fl_config c;
    const esp_app_desc_t *app = esp_app_get_description();
    uint8_t m[6];
    size_t len = 0;
    if (sodium_init() < 0) return ESP_FAIL;
    s_cfg = *cfg;
    if (nvs_open("flotilla", NVS_READWRITE, &s_port.nvs) != ESP_OK) return ESP_FAIL;
    if (esp_read_mac(m, ESP_MAC_WIFI_STA) != ESP_OK) return ESP_FAIL;
    snprintf(mac, sizeof mac, "%02X:%02X:%02X:%02X:%02X:%02X", m[0], m[1], m[2], m[3], m[4], m[5]);
    snprintf(id, sizeof id, "esp-%02x%02x%02x%02x%02x%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    memset(&c, 0, sizeof c);
    c.server = cfg->server ? cfg->server : CONFIG_FLOTILLA_OTA_SERVER;
    if (!c.server[0]) c.server = NULL; /* found by mDNS */
    c.device_id = cfg->device_id ? cfg->device_id : id;
    c.mac = mac;
    c.model = cfg->model ? cfg->model : app->project_name;
    c.chip = CONFIG_IDF_TARGET;
    c.version = app->version; /* read from the running image */
    c.secure_version = app->secure_version;
    c.interval_secs = cfg->interval_secs ? cfg->interval_secs : CONFIG_FLOTILLA_OTA_INTERVAL_SECS;
    c.allow_reenrol = 1;
    c.report_via_mqtt = cfg->mqtt != NULL;
    /* a server certificate means HTTPS only, also for a server found by mDNS */
    c.tls_pin = cfg->server_cert_pem;
    if (sodium_hex2bin(c.pubkey, sizeof c.pubkey, CONFIG_FLOTILLA_OTA_PUBKEY_HEX,
                       strlen(CONFIG_FLOTILLA_OTA_PUBKEY_HEX), NULL, &len, NULL) != 0 ||
        len != FL_PUBKEY_LEN)
        return ESP_ERR_INVALID_ARG;
    if (!cfg->server_cert_pem && c.server && strncmp(c.server, "https://", 8) == 0) return ESP_ERR_INVALID_ARG;
    if (cfg->mqtt && cfg->mqtt_uri) return ESP_ERR_INVALID_ARG;
    if (!c.server) mdns_init(); /* may already run for the application: a query needs it either way */
    {
        const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
        c.slot_size = next ? next->size : 0;
    }
    s_port.cert_pem = cfg->server_cert_pem;
    s_port.mqtt = cfg->mqtt;
    if (cfg->mqtt_uri) {
        s_port.own_mqtt = 1;
        s_port.offers = xQueueCreate(1, sizeof(char *));
        if (!s_port.offers) return ESP_FAIL;
        snprintf(s_port.status_topic, sizeof s_port.status_topic, "flotilla/%s/status", c.device_id);
        snprintf(s_port.cmd_topic, sizeof s_port.cmd_topic, "flotilla/%s/cmd/ota", c.device_id);
        if (fl_presence_json(s_port.presence, sizeof s_port.presence, &c, NULL) < 0) return ESP_ERR_INVALID_ARG;
    }
    memset(&s_fl, 0, sizeof s_fl);
    s_fl.ctx = &s_port;
    s_fl.http_post_json = post_json;
    s_fl.http_get = http_get;
    s_fl.flash_begin = flash_begin;
    s_fl.flash_write = flash_write;
    s_fl.flash_commit = flash_commit;
    s_fl.flash_abort = flash_abort;
    s_fl.flash_confirm = flash_confirm;
    s_fl.now_ms = now_ms;
    s_fl.sleep_ms = sleep_ms;
    s_fl.kv_get = kv_get;
    s_fl.kv_set = kv_set;
    s_fl.sha256_init = sha_init;
    s_fl.sha256_update = sha_update;
    s_fl.sha256_final = sha_final;
    s_fl.ed25519_verify = ed_verify;
    s_fl.base64_decode = b64_decode;
    if (cfg->mqtt || cfg->mqtt_uri) s_fl.mqtt_publish = mqtt_publish;
    s_fl.mdns_query = mdns_query;
    if (fl_init(&s_client, &c, &s_fl) != 0) return ESP_ERR_INVALID_ARG;
    return xTaskCreate(ota_task, "flotilla_ota", 8192, NULL, 5, NULL) == pdPASS ? ESP_OK : ESP_FAIL;
}

esp_err_t flotilla_ota_push(const char *payload, int len) {
    fl_result r;
    if (len < 0) return ESP_ERR_INVALID_ARG;
    r = fl_handle_offer(&s_client, payload, (size_t)len);
    if (r == FL_OK_REBOOT) esp_restart();
    return r >= 0 ? ESP_OK : ESP_FAIL;
}
