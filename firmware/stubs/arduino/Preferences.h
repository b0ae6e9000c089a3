#pragma once
#include "Arduino.h"
class Preferences {
  public:
    Preferences();
    ~Preferences();
    bool begin(const char *name, bool readOnly = false, const char *partition_label = NULL);
    void end();
    bool remove(const char *key);
    bool isKey(const char *key);
    size_t putString(const char *key, const char *value);
    String getString(const char *key, String defaultValue = String());
};
