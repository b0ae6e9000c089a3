/* The host port's service discovery: a one-shot mDNS query (RFC 6762 §5.1) from an ephemeral
 * port, so responders answer by unicast (§6.7, "legacy unicast"), for the PTR records of a
 * service type and the SRV, TXT and A records of its instances (RFC 6763).
 *
 * Everything in an answer comes from the LAN and is untrusted: the parser reads only inside the
 * packet, follows at most MDNS_MAX_JUMPS compression pointers and only backwards, keeps names to
 * 255 bytes and at most FL_MDNS_MAX instances, and drops what does not fit. The core then
 * decides which instance (if any) to believe (fl_mdns_pick). */
#ifndef FLOTILLA_HOST_MDNS_H
#define FLOTILLA_HOST_MDNS_H

#include "flotilla_ota.h"

#define MDNS_NAME_MAX 255 /* a name in wire form, terminating zero included (RFC 1035 §3.1) */
#define MDNS_MAX_JUMPS 16
#define MDNS_MAX_RECORDS 64 /* records read from one packet; more are ignored */

#define MDNS_TYPE_A 1
#define MDNS_TYPE_PTR 12
#define MDNS_TYPE_TXT 16
#define MDNS_TYPE_SRV 33

/* An instance of the service, as far as the answers so far resolve it. */
typedef struct {
    uint8_t name[MDNS_NAME_MAX]; /* the instance, wire form */
    size_t name_len;
    uint8_t target[MDNS_NAME_MAX]; /* its SRV target host, wire form */
    size_t target_len;
    int have_srv, have_txt;
    fl_mdns_service svc;
} mdns_instance;

typedef struct {
    mdns_instance inst[FL_MDNS_MAX];
    int n;
} mdns_table;

/* "a.b.local" to wire form; its length, or -1 (an empty or 64+ byte label, over 255 bytes). */
int mdns_encode_name(const char *dotted, uint8_t *out, size_t cap);

/* A query with `nq` questions (names in wire form, class IN); its length, or -1. */
int mdns_build_query(uint8_t *buf, size_t cap, uint16_t id, const uint8_t *const *names, const size_t *name_lens,
                     const uint16_t *types, int nq);

/* Takes the records of one response into `t`: PTR records of `service` (wire form) add
 * instances, SRV/TXT records of those instances and A records of their targets fill them in.
 * A record with TTL 0 (a goodbye) is ignored. Returns 0 for a response read to its end, -1 for
 * one that is not a response or is malformed (records before the fault are kept). */
int mdns_parse_response(const uint8_t *pkt, size_t len, const uint8_t *service, size_t service_len, mdns_table *t);

/* 1 if the instance has an address, a port and its TXT record. */
int mdns_complete(const mdns_instance *i);

/* fl_port.mdns_query: queries 224.0.0.251:5353 on every IPv4 multicast interface (again for what
 * is still missing after a third and two thirds of timeout_ms) and returns the complete
 * instances once all it heard of are complete, or when timeout_ms is over. */
int host_mdns_query(void *ctx, const char *service, const char *proto, uint32_t timeout_ms, fl_mdns_service *out,
                    int max);

#endif
