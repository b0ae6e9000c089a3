#pragma once
#include "esp_err.h"
#include "esp_netif_ip_addr.h"
typedef struct esp_netif_obj esp_netif_t;
char *esp_ip4addr_ntoa(const esp_ip4_addr_t *addr, char *buf, int buflen);
