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
    const char *server;         /* NULL: CONFIG_FLOTILLA_OTA_SERVER */
    const char *device_id;      /* NULL: "esp-" + the STA MAC */
    const char *model;          /* NULL: the app's project name */
    const char *server_cert_pem; /* the pinned certificate (flotilla keys tls); NULL: plain HTTP only */
    uint32_t interval_secs;     /* 0: CONFIG_FLOTILLA_OTA_INTERVAL_SECS */
    /* Decides, after an update's first boot, whether the new image is healthy. NULL: healthy. */
    int (*health_check)(void);
    /* Optional: reports over this client's flotilla/<id>/status/ota instead of HTTP. */
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
