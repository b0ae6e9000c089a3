#pragma once
#include "Arduino.h"
#include "IPAddress.h"
class MDNSResponder {
  public:
    MDNSResponder();
    ~MDNSResponder();
    bool begin(const char *hostName);
    int queryService(const char *service, const char *proto);
    IPAddress IP(int idx);
    uint16_t port(int idx);
    int numTxt(int idx);
    String txt(int idx, int txtIdx);
    String txtKey(int idx, int txtIdx);
};
extern MDNSResponder MDNS;
