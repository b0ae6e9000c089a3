/* Example: connect to Wi-Fi, then let Flotilla keep the firmware up to date. */
#include "esp_err.h"
#include "flotilla_ota_idf.h"
#include "nvs_flash.h"
#include "protocol_examples_common.h"

/* Your application's own test of a fresh image: sensors answer, the network works, ... */
static int app_is_healthy(void) {
    return 1;
}

void app_main(void) {
    flotilla_ota_idf_config cfg = {0};
    ESP_ERROR_CHECK(nvs_flash_init());
    ESP_ERROR_CHECK(example_connect());
    cfg.model = "pump-ctl";
    cfg.health_check = app_is_healthy;
    /* The server: CONFIG_FLOTILLA_OTA_SERVER, or found by mDNS when that is empty (the default).
     * MQTT push with the device's own broker login: cfg.mqtt_uri = "mqtt://192.168.1.20:1883"; */
    ESP_ERROR_CHECK(flotilla_ota_start(&cfg));
}
