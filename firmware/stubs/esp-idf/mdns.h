#pragma once
/* The mdns component (espressif/mdns, idf_component.yml): the query API the port calls. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"
#include "esp_netif.h"
typedef enum { MDNS_IP_PROTOCOL_V4, MDNS_IP_PROTOCOL_V6, MDNS_IP_PROTOCOL_MAX } mdns_ip_protocol_t;
typedef struct {
    const char *key;
    const char *value;
} mdns_txt_item_t;
typedef struct mdns_ip_addr_s {
    esp_ip_addr_t addr;
    struct mdns_ip_addr_s *next;
} mdns_ip_addr_t;
typedef struct mdns_result_s {
    struct mdns_result_s *next;
    esp_netif_t *esp_netif;
    uint32_t ttl;
    mdns_ip_protocol_t ip_protocol;
    char *instance_name;
    char *service_type;
    char *proto;
    char *hostname;
    uint16_t port;
    mdns_txt_item_t *txt;
    uint8_t *txt_value_len;
    size_t txt_count;
    mdns_ip_addr_t *addr;
} mdns_result_t;
esp_err_t mdns_init(void);
esp_err_t mdns_query_ptr(const char *service_type, const char *proto, uint32_t timeout, size_t max_results,
                         mdns_result_t **results);
void mdns_query_results_free(mdns_result_t *results);
