// Keeps this sketch up to date from a Flotilla server over Wi-Fi.
#include <FlotillaOTA.h>
#include <WiFi.h>

static const char *SITE_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"; // flotilla keys export --format hex

static bool healthy() {
    return WiFi.status() == WL_CONNECTED; // your own checks of a fresh image
}

void setup() {
    Serial.begin(115200);
    WiFi.begin("my-ssid", "my-password");
    while (WiFi.status() != WL_CONNECTED) delay(200);
    FlotillaOTA.setHealthCheck(healthy);
    // nullptr: find the server by mDNS; or give its URL ("http://192.168.1.20:8070")
    if (!FlotillaOTA.begin(nullptr, "pump-ctl", "1.4.2", SITE_KEY))
        Serial.println("FlotillaOTA: bad configuration");
}

void loop() {
    FlotillaOTA.loop();
    delay(100);
}
