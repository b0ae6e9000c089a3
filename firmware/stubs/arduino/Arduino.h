#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
class String {
  public:
    String(const char *cstr = "");
    String(const String &str);
    explicit String(unsigned long value, unsigned char base = 10);
    ~String(void);
    String &operator=(const String &rhs);
    unsigned int length(void) const;
    const char *c_str() const;
    friend String operator+(const String &lhs, const String &rhs);
    friend String operator+(const String &lhs, const char *cstr);
};
class HardwareSerial {
  public:
    void begin(unsigned long baud);
    size_t println(const char *s);
};
extern HardwareSerial Serial;
unsigned long millis(void);
void delay(uint32_t ms);
long random(long howsmall, long howbig);
class EspClass {
  public:
    void restart();
};
extern EspClass ESP;
