# Compile checks of the ESP-IDF component and the Arduino library on the host, against stub
# headers of exactly the APIs they call (firmware/stubs/): -Wall -Wextra -Werror, nothing linked.
CC ?= gcc
CXX ?= g++
B := build/ports
W := -Wall -Wextra -Werror
HOSTINC := $(shell pkg-config --cflags libcjson libsodium)

.PHONY: all
all: $(B)/idf_port.o $(B)/idf_example.o $(B)/arduino_core.o $(B)/arduino_port.o $(B)/arduino_example.o

$(B):
	mkdir -p $(B)

$(B)/idf_port.o: esp-idf/src/flotilla_ota_idf.c esp-idf/include/flotilla_ota_idf.h | $(B)
	$(CC) -std=gnu11 $(W) -Istubs/esp-idf -Iesp-idf/include -Iclient/include $(HOSTINC) -c $< -o $@

$(B)/idf_example.o: esp-idf/example/main/main.c | $(B)
	$(CC) -std=gnu11 $(W) -Istubs/esp-idf -Iesp-idf/include -Iclient/include $(HOSTINC) -c $< -o $@

$(B)/arduino_port.o: arduino/src/FlotillaOTA.cpp arduino/src/FlotillaOTA.h arduino/src/flotilla_ota.c | $(B)
	$(CXX) -std=gnu++17 $(W) -Istubs/arduino -Istubs/esp-idf -Iarduino/src $(HOSTINC) -c $< -o $@

$(B)/arduino_example.o: arduino/examples/BasicOTA/BasicOTA.ino | $(B)
	$(CXX) -std=gnu++17 $(W) -Istubs/arduino -Istubs/esp-idf -Iarduino/src $(HOSTINC) -x c++ -include Arduino.h -c $< -o $@

$(B)/arduino_core.o: arduino/src/flotilla_ota.c client/src/flotilla_ota.c | $(B)
	$(CC) -std=c99 $(W) -Istubs/arduino -Istubs/esp-idf $(HOSTINC) -c $< -o $@
