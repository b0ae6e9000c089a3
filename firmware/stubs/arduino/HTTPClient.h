#pragma once
#include "Arduino.h"
#include "WiFi.h"
class HTTPClient {
  public:
    HTTPClient();
    ~HTTPClient();
    bool begin(String url);
    bool begin(String url, const char *CAcert);
    void end(void);
    bool connected(void);
    void addHeader(const String &name, const String &value, bool first = false, bool replace = true);
    int GET();
    int POST(const String &payload);
    int getSize(void);
    WiFiClient *getStreamPtr(void);
    String getString(void);
};
