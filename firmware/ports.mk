# Compile checks of the ESP-IDF component and the Arduino library on the host, against stub
# headers of exactly the APIs they call (firmware/stubs/): -Wall -Wextra -Werror, nothing linked.
CC ?= gcc
CXX ?= g++
B := build/ports
# -MMD -MP: each object also writes its header dependencies (build/ports/*.d, included below), so
# a change to any header it includes (client/, esp-idf/, arduino/, stubs/) rebuilds it.
W := -Wall -Wextra -Werror -MMD -MP
HOSTINC := $(shell pkg-config --cflags libcjson libsodium)

OBJS := $(B)/idf_port.o $(B)/idf_example.o $(B)/arduino_core.o $(B)/arduino_port.o $(B)/arduino_example.o

.PHONY: all
all: $(OBJS)

# A change of flags here rebuilds them too (and objects from before the .d files existed).
$(OBJS): ports.mk

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

-include $(OBJS:.o=.d)
