// ESP32 Arduino port of the Flotilla OTA core: HTTPClient, Update, Preferences, mbedTLS, libsodium.
#include "FlotillaOTA.h"

#include <ESPmDNS.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <Update.h>
#include <WiFi.h>
#include <esp_ota_ops.h>
#include <mbedtls/base64.h>
#include <mbedtls/sha256.h>
#include <sodium.h>
#include <string.h>

FlotillaOTAClass FlotillaOTA;

namespace {

struct ArduinoPort {
    const char *cert = nullptr;
    Preferences prefs;
    uint64_t size = 0;
    uint64_t written = 0;
    bool open = false;
};

ArduinoPort g_port;
String g_mac;

static_assert(sizeof(mbedtls_sha256_context) <= sizeof(fl_sha256_state), "SHA-256 state fits");

bool beginHttp(HTTPClient &http, ArduinoPort *p, const char *url, const char *bearer) {
    bool ok = p->cert ? http.begin(String(url), p->cert) : http.begin(String(url));
    if (ok && bearer) http.addHeader("Authorization", String("Bearer ") + bearer);
    return ok;
}

int postJson(void *ctx, const char *url, const char *bearer, const char *body, char *resp, size_t cap,
             int *status) {
    HTTPClient http;
    if (!beginHttp(http, static_cast<ArduinoPort *>(ctx), url, bearer)) return -1;
    http.addHeader("Content-Type", "application/json");
    int code = http.POST(String(body));
    if (code <= 0) {
        http.end();
        return -1;
    }
    *status = code;
    String s = http.getString();
    size_t n = s.length() < cap - 1 ? s.length() : cap - 1;
    memcpy(resp, s.c_str(), n);
    resp[n] = '\0';
    http.end();
    return 0;
}

int httpGet(void *ctx, const char *url, const char *bearer, uint64_t offset, fl_sink_fn sink, void *sctx,
            int *status) {
    static uint8_t buf[1024];
    HTTPClient http;
    int rc = 0;
    if (!beginHttp(http, static_cast<ArduinoPort *>(ctx), url, bearer)) return -1;
    if (offset) http.addHeader("Range", String("bytes=") + String((unsigned long)offset) + "-");
    int code = http.GET();
    if (code <= 0) {
        http.end();
        return -1;
    }
    *status = code;
    if (code == 200 || code == 206) {
        WiFiClient *stream = http.getStreamPtr();
        int left = http.getSize(); // -1: unknown
        uint32_t idle_since = millis();
        while (left != 0) {
            int avail = stream->available();
            if (avail <= 0) {
                if (!http.connected() || millis() - idle_since > 30000) break;
                delay(1);
                continue;
            }
            size_t want = (size_t)avail < sizeof buf ? (size_t)avail : sizeof buf;
            size_t n = stream->readBytes(buf, want);
            idle_since = millis();
            if (sink(sctx, buf, n)) {
                rc = -1;
                break;
            }
            if (left > 0) left -= (int)n;
        }
        if (left > 0) rc = -1; // broke off: the core resumes with Range
    }
    http.end();
    return rc;
}

// Update writes sequentially; a write at offset 0 after earlier bytes (a server that ignored
// Range) starts the slot over. No resume across a reboot: flash_read is not provided.
int flashBegin(void *ctx, uint64_t size, int) {
    ArduinoPort *p = static_cast<ArduinoPort *>(ctx);
    p->size = size;
    p->written = 0;
    p->open = Update.begin((size_t)size);
    return p->open ? 0 : -1;
}
int flashWrite(void *ctx, uint64_t off, const uint8_t *d, size_t n) {
    ArduinoPort *p = static_cast<ArduinoPort *>(ctx);
    if (off == 0 && p->written > 0) {
        Update.abort();
        if (flashBegin(ctx, p->size, 0) != 0) return -1;
    }
    if (off != p->written) return -1;
    if (Update.write(const_cast<uint8_t *>(d), n) != n) return -1;
    p->written += n;
    return 0;
}
int flashCommit(void *ctx, const char *) {
    static_cast<ArduinoPort *>(ctx)->open = false;
    return Update.end(false) ? 0 : -1; // verifies the image and sets the boot partition
}
void flashAbort(void *ctx) {
    ArduinoPort *p = static_cast<ArduinoPort *>(ctx);
    if (p->open) Update.abort();
    p->open = false;
}
int flashConfirm(void *, int valid) {
    if (valid) return esp_ota_mark_app_valid_cancel_rollback() == ESP_OK ? 0 : -1;
    return esp_ota_mark_app_invalid_rollback_and_reboot() == ESP_OK ? 0 : -1;
}
uint64_t nowMs(void *) {
    return millis();
}
void sleepMs(void *, uint32_t ms) {
    delay(ms);
}
int kvGet(void *ctx, const char *key, char *buf, size_t cap) {
    ArduinoPort *p = static_cast<ArduinoPort *>(ctx);
    if (!p->prefs.isKey(key)) return -1;
    String v = p->prefs.getString(key, String());
    if (v.length() >= cap) return -1;
    memcpy(buf, v.c_str(), v.length() + 1);
    return (int)v.length();
}
int kvSet(void *ctx, const char *key, const char *value) {
    ArduinoPort *p = static_cast<ArduinoPort *>(ctx);
    if (!value) {
        p->prefs.remove(key);
        return 0;
    }
    return p->prefs.putString(key, value) == strlen(value) ? 0 : -1;
}
int shaInit(void *, fl_sha256_state *st) {
    mbedtls_sha256_context *s = reinterpret_cast<mbedtls_sha256_context *>(st->bytes);
    mbedtls_sha256_init(s);
    return mbedtls_sha256_starts(s, 0);
}
int shaUpdate(void *, fl_sha256_state *st, const uint8_t *d, size_t n) {
    return mbedtls_sha256_update(reinterpret_cast<mbedtls_sha256_context *>(st->bytes), d, n);
}
int shaFinal(void *, fl_sha256_state *st, uint8_t out[FL_SHA256_LEN]) {
    mbedtls_sha256_context *s = reinterpret_cast<mbedtls_sha256_context *>(st->bytes);
    int rc = mbedtls_sha256_finish(s, out);
    mbedtls_sha256_free(s);
    return rc;
}
int edVerify(void *, const uint8_t sig[FL_SIG_LEN], const uint8_t *m, size_t n, const uint8_t pk[FL_PUBKEY_LEN]) {
    return crypto_sign_verify_detached(sig, m, n, pk);
}
int b64Decode(void *, const char *in, uint8_t *out, size_t cap) {
    size_t len = 0;
    if (mbedtls_base64_decode(out, cap, &len, reinterpret_cast<const unsigned char *>(in), strlen(in)) != 0)
        return -1;
    return (int)len;
}

// ESPmDNS's query (PTR, SRV, TXT, A; its own timeout of a few seconds).
int mdnsQuery(void *, const char *service, const char *proto, uint32_t, fl_mdns_service *out, int max) {
    int found = MDNS.queryService(service, proto), n = 0;
    for (int i = 0; i < found && n < max; i++) {
        fl_mdns_service *s = &out[n];
        memset(s, 0, sizeof *s);
        String addr = MDNS.IP(i).toString();
        if (addr.length() >= sizeof s->addr || !MDNS.port(i)) continue;
        memcpy(s->addr, addr.c_str(), addr.length() + 1);
        s->port = MDNS.port(i);
        for (int j = 0; j < MDNS.numTxt(i); j++) {
            String k = MDNS.txtKey(i, j), v = MDNS.txt(i, j);
            fl_mdns_add_txt(s, k.c_str(), k.length(), v.c_str(), v.length());
        }
        n++;
    }
    return n;
}

bool (*g_publish)(const char *topic, const char *payload, bool retain) = nullptr;

int mqttPublish(void *, const char *topic, const char *payload, int retain) {
    return g_publish && g_publish(topic, payload, retain != 0) ? 0 : -1;
}

} // namespace

bool FlotillaOTAClass::begin(const char *server, const char *model, const char *version, const char *pubkeyHex,
                             const char *serverCertPem) {
    size_t len = 0;
    if (sodium_init() < 0) return false;
    if (server && !server[0]) server = nullptr; // found by mDNS
    if (!serverCertPem && server && strncmp(server, "https://", 8) == 0) return false;
    g_port.cert = serverCertPem;
    if (!g_port.prefs.begin("flotilla", false)) return false;
    g_mac = WiFi.macAddress();
    static char id[24];
    snprintf(id, sizeof id, "esp-%.2s%.2s%.2s%.2s%.2s%.2s", g_mac.c_str(), g_mac.c_str() + 3, g_mac.c_str() + 6,
             g_mac.c_str() + 9, g_mac.c_str() + 12, g_mac.c_str() + 15);
    cfg_.server = server;
    cfg_.device_id = id;
    cfg_.mac = g_mac.c_str();
    cfg_.model = model;
    cfg_.chip = "esp32";
    cfg_.version = version;
    cfg_.interval_secs = interval_s_;
    cfg_.allow_reenrol = 1;
    cfg_.tls_pin = serverCertPem; // HTTPS only (also to a server found by mDNS) when given
    if (!server && !MDNS.begin(id)) return false;
    const esp_partition_t *next = esp_ota_get_next_update_partition(nullptr);
    cfg_.slot_size = next ? next->size : 0;
    if (sodium_hex2bin(cfg_.pubkey, sizeof cfg_.pubkey, pubkeyHex, strlen(pubkeyHex), nullptr, &len, nullptr) != 0 ||
        len != FL_PUBKEY_LEN)
        return false;
    port_.ctx = &g_port;
    port_.http_post_json = postJson;
    port_.http_get = httpGet;
    port_.flash_begin = flashBegin;
    port_.flash_write = flashWrite;
    port_.flash_commit = flashCommit;
    port_.flash_abort = flashAbort;
    port_.flash_confirm = flashConfirm;
    port_.now_ms = nowMs;
    port_.sleep_ms = sleepMs;
    port_.kv_get = kvGet;
    port_.kv_set = kvSet;
    port_.sha256_init = shaInit;
    port_.sha256_update = shaUpdate;
    port_.sha256_final = shaFinal;
    port_.ed25519_verify = edVerify;
    port_.base64_decode = b64Decode;
    port_.mdns_query = mdnsQuery;
    if (g_publish) port_.mqtt_publish = mqttPublish;
    if (fl_init(&client_, &cfg_, &port_) != 0) return false;
    fl_after_boot(&client_, health_ ? health_() : 1);
    started_ = true;
    next_ms_ = millis();
    return true;
}

void FlotillaOTAClass::loop() {
    if (!started_ || (int32_t)(millis() - next_ms_) < 0) return;
    fl_result r = fl_check_in(&client_);
    if (r == FL_OK_REBOOT) ESP.restart();
    // the interval (+-20 %), longer after refusals or failures
    next_ms_ = millis() + fl_next_check_in_ms(&client_, (uint32_t)random(0, 0x7fffffff));
}

bool FlotillaOTAClass::handlePush(const char *payload, size_t len) {
    if (!started_) return false;
    fl_result r = fl_handle_offer(&client_, payload, len);
    if (r == FL_OK_REBOOT) ESP.restart();
    return r >= 0;
}

void FlotillaOTAClass::setMqttPublisher(bool (*publish)(const char *topic, const char *payload, bool retain)) {
    g_publish = publish;
}

bool FlotillaOTAClass::mqttLogin(char *user, size_t userCap, char *pass, size_t passCap) {
    if (!started_) return false;
    return kvGet(&g_port, FL_KV_MQTT_USER, user, userCap) > 0 && kvGet(&g_port, FL_KV_MQTT_PASS, pass, passCap) > 0;
}

bool FlotillaOTAClass::presence(char *buf, size_t cap) {
    return started_ && fl_presence_json(buf, cap, &cfg_, nullptr) > 0;
}

bool FlotillaOTAClass::useMqtt(bool on) {
    if (!started_ || (on && !port_.mqtt_publish)) return false;
    client_.cfg.report_via_mqtt = on;
    return true;
}
