// Flotilla OTA client for the ESP32 Arduino core. Compile-checked on a host against declaration
// stubs of the Arduino APIs it calls; not run on hardware here.
#pragma once

#include <Arduino.h>

#include "../../client/include/flotilla_ota.h"

class FlotillaOTAClass {
  public:
    // server: "http://host:8070" or "https://…" with serverCertPem (the pinned certificate from
    // `flotilla keys tls`), or nullptr / "" to find it by mDNS (_flotilla._tcp; HTTPS only when
    // serverCertPem is given, the advertised fingerprint never trusted in its place);
    // pubkeyHex: `flotilla keys export --format hex`; version: this sketch's version (SemVer), as
    // the image reports it.
    bool begin(const char *server, const char *model, const char *version, const char *pubkeyHex,
               const char *serverCertPem = nullptr);
    void setInterval(uint32_t seconds) { interval_s_ = seconds ? seconds : 600; }
    // Decides, at the first boot of a new image, whether it is healthy (else: rollback).
    void setHealthCheck(bool (*check)()) { health_ = check; }
    // Call from loop(): checks in at boot and every interval (+-20 %); restarts into an update.
    void loop();
    // An MQTT cmd/ota payload from your MQTT client.
    bool handlePush(const char *payload, size_t len);
    // MQTT with your own client (the core has none): connect with mqttLogin() (the device's own
    // broker login from its enrolment; false until it enrolled, changes on a re-key), a retained
    // Last Will {"online":false} and, at every connect, presence() retained, both on
    // flotilla/<id>/status; subscribe to flotilla/<id>/cmd/ota and pass payloads to handlePush().
    // Reports go over `publish` (true: sent) once setMqttPublisher() (before begin) and useMqtt(true).
    void setMqttPublisher(bool (*publish)(const char *topic, const char *payload, bool retain));
    bool mqttLogin(char *user, size_t userCap, char *pass, size_t passCap);
    bool presence(char *buf, size_t cap);
    bool useMqtt(bool on);
    // The device id (topic id): "esp-" + the STA MAC.
    const char *deviceId() const { return cfg_.device_id; }
    // Credentials received since begin(): when it changes, log in to the broker again.
    uint32_t credentials() const { return client_.credentials; }

  private:
    fl_config cfg_{};
    fl_port port_{};
    fl_client client_{};
    uint32_t interval_s_ = 600;
    uint32_t next_ms_ = 0;
    bool started_ = false;
    bool (*health_)() = nullptr;
};

extern FlotillaOTAClass FlotillaOTA;
