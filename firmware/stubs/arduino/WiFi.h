#pragma once
#include "Arduino.h"
typedef enum { WL_IDLE_STATUS = 0, WL_CONNECTED = 3, WL_DISCONNECTED = 6 } wl_status_t;
class Stream {
  public:
    virtual int available() = 0;
    size_t readBytes(uint8_t *buffer, size_t length);
};
class WiFiClient : public Stream {
  public:
    int available() override;
    uint8_t connected();
};
class WiFiClass {
  public:
    wl_status_t begin(const char *ssid, const char *passphrase = NULL);
    wl_status_t status();
    String macAddress();
};
extern WiFiClass WiFi;
