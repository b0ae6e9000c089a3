#pragma once
#include "Arduino.h"
class IPAddress {
  public:
    IPAddress();
    String toString() const;
};
