/* ESP-IDF port of the Flotilla OTA core. See include/flotilla_ota_idf.h. */
#include "flotilla_ota_idf.h"

#include <stdio.h>
#include <string.h>

#include "esp_app_desc.h"
#include "esp_http_client.h"
#include "esp_mac.h"
#include "esp_ota_ops.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "mbedtls/base64.h"
#include "mbedtls/sha256.h"
#include "nvs.h"
#include "sdkconfig.h"
#include "sodium.h"

typedef struct {
    const char *cert_pem;
    esp_ota_handle_t ota;
    const esp_partition_t *part;
    nvs_handle_t nvs;
    esp_mqtt_client_handle_t mqtt;
} idf_port;

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

static void ota_task(void *arg) {
    uint32_t interval = s_cfg.interval_secs ? s_cfg.interval_secs : CONFIG_FLOTILLA_OTA_INTERVAL_SECS;
    int healthy;
    (void)arg;
    healthy = s_cfg.health_check ? s_cfg.health_check() : 1;
    fl_after_boot(&s_client, healthy);
    for (;;) {
        if (fl_check_in(&s_client) == FL_OK_REBOOT) esp_restart();
        vTaskDelay(pdMS_TO_TICKS(interval * (800u + esp_random() % 401u)));
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
    c.device_id = cfg->device_id ? cfg->device_id : id;
    c.mac = mac;
    c.model = cfg->model ? cfg->model : app->project_name;
    c.chip = CONFIG_IDF_TARGET;
    c.version = app->version; /* read from the running image */
    c.secure_version = app->secure_version;
    c.interval_secs = cfg->interval_secs ? cfg->interval_secs : CONFIG_FLOTILLA_OTA_INTERVAL_SECS;
    c.allow_reenrol = 1;
    c.report_via_mqtt = cfg->mqtt != NULL;
    if (sodium_hex2bin(c.pubkey, sizeof c.pubkey, CONFIG_FLOTILLA_OTA_PUBKEY_HEX,
                       strlen(CONFIG_FLOTILLA_OTA_PUBKEY_HEX), NULL, &len, NULL) != 0 ||
        len != FL_PUBKEY_LEN)
        return ESP_ERR_INVALID_ARG;
    if (!cfg->server_cert_pem && strncmp(c.server, "https://", 8) == 0) return ESP_ERR_INVALID_ARG;
    {
        const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
        c.slot_size = next ? next->size : 0;
    }
    s_port.cert_pem = cfg->server_cert_pem;
    s_port.mqtt = cfg->mqtt;
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
    if (cfg->mqtt) s_fl.mqtt_publish = mqtt_publish;
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
