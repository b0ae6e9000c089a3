/* Flotilla OTA client, ESP-IDF port: the portable core (flotilla_ota.h) on esp_http_client,
 * the app_update OTA API (two app slots, rollback), NVS, mbedTLS SHA-256/base64 and libsodium's
 * Ed25519. Compile-checked on a host against declaration stubs; not run on hardware here. */
#pragma once

#include "esp_err.h"
#include "flotilla_ota.h"
#include "mqtt_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *server;         /* NULL: CONFIG_FLOTILLA_OTA_SERVER; "" (either): found by mDNS */
    const char *device_id;      /* NULL: "esp-" + the STA MAC */
    const char *model;          /* NULL: the app's project name */
    const char *server_cert_pem; /* the pinned certificate (flotilla keys tls --pem): HTTPS only, also to
                                    a server found by mDNS; NULL: plain HTTP only */
    uint32_t interval_secs;     /* 0: CONFIG_FLOTILLA_OTA_INTERVAL_SECS */
    /* Decides, after an update's first boot, whether the new image is healthy. NULL: healthy. */
    int (*health_check)(void);
    /* Optional, one of the two:
     * - mqtt_uri ("mqtt://192.168.1.20:1883"): the port runs its own MQTT client, logged in with
     *   the device's own broker login from its enrolment, with a retained Last Will
     *   {"online":false} and a retained presence on flotilla/<id>/status at every connect; it
     *   takes offers from flotilla/<id>/cmd/ota and reports on .../status/ota.
     * - mqtt: the application's client; reports go over it, and the application subscribes and
     *   hands cmd/ota payloads to flotilla_ota_push. */
    const char *mqtt_uri;
    esp_mqtt_client_handle_t mqtt;
} flotilla_ota_idf_config;

/* Confirms or rolls back a pending image, then checks in at boot and every interval (± 20 %)
 * in a task of its own; restarts into a verified, written image. */
esp_err_t flotilla_ota_start(const flotilla_ota_idf_config *cfg);

/* Hands an MQTT cmd/ota payload to the client (from your MQTT event handler). */
esp_err_t flotilla_ota_push(const char *payload, int len);

#ifdef __cplusplus
}
#endif
