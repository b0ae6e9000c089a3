/* See mdns.h. DNS message format: RFC 1035 §4; mDNS: RFC 6762; DNS-SD: RFC 6763. */
#include "mdns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MDNS_PACKET_MAX 9000 /* RFC 6762 §17 */

static int lower(int ch) {
    return (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch;
}

/* Names compare without regard to ASCII case (RFC 6762 §16). Label lengths (1-63) are never
 * letters, so the wire forms compare byte by byte. */
static int name_eq(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    size_t i;
    if (al != bl) return 0;
    for (i = 0; i < al; i++)
        if (lower(a[i]) != lower(b[i])) return 0;
    return 1;
}

int mdns_encode_name(const char *dotted, uint8_t *out, size_t cap) {
    size_t o = 0;
    const char *p = dotted;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n > 63 || o + n + 2 > cap || o + n + 2 > MDNS_NAME_MAX) return -1;
        out[o++] = (uint8_t)n;
        memcpy(out + o, p, n);
        o += n;
        if (!dot) break;
        p = dot + 1;
    }
    out[o++] = 0;
    return (int)o;
}

int mdns_build_query(uint8_t *buf, size_t cap, uint16_t id, const uint8_t *const *names, const size_t *name_lens,
                     const uint16_t *types, int nq) {
    size_t o = 12;
    int i;
    if (cap < 12 || nq < 1 || nq > 64) return -1;
    memset(buf, 0, 12);
    buf[0] = (uint8_t)(id >> 8);
    buf[1] = (uint8_t)id;
    buf[5] = (uint8_t)nq;
    for (i = 0; i < nq; i++) {
        if (name_lens[i] > MDNS_NAME_MAX || o + name_lens[i] + 4 > cap) return -1;
        memcpy(buf + o, names[i], name_lens[i]);
        o += name_lens[i];
        buf[o++] = (uint8_t)(types[i] >> 8);
        buf[o++] = (uint8_t)types[i];
        buf[o++] = 0;
        buf[o++] = 1; /* IN */
    }
    return (int)o;
}

/* Reads the name at *off into out (wire form, uncompressed) and moves *off past it. Pointers
 * must point backwards (no loops) and are followed at most MDNS_MAX_JUMPS times. */
static int read_name(const uint8_t *pkt, size_t len, size_t *off, uint8_t *out, size_t *out_len) {
    size_t pos = *off, o = 0, after = 0;
    int jumps = 0;
    for (;;) {
        uint8_t b;
        if (pos >= len) return -1;
        b = pkt[pos];
        if ((b & 0xc0) == 0xc0) {
            size_t to;
            if (pos + 1 >= len || ++jumps > MDNS_MAX_JUMPS) return -1;
            to = ((size_t)(b & 0x3f) << 8) | pkt[pos + 1];
            if (to >= pos) return -1;
            if (jumps == 1) after = pos + 2;
            pos = to;
            continue;
        }
        if (b & 0xc0) return -1; /* 0x40 and 0x80: label types that are not in use */
        if (b == 0) {
            if (o + 1 > MDNS_NAME_MAX) return -1;
            out[o++] = 0;
            pos++;
            break;
        }
        if (pos + 1 + b > len || o + 1 + b + 1 > MDNS_NAME_MAX) return -1;
        memcpy(out + o, pkt + pos, (size_t)b + 1);
        o += (size_t)b + 1;
        pos += (size_t)b + 1;
    }
    *off = jumps ? after : pos;
    *out_len = o;
    return 0;
}

typedef struct {
    uint8_t owner[MDNS_NAME_MAX];
    size_t owner_len;
    uint16_t type, klass;
    uint32_t ttl;
    size_t rdata, rdlen;
} record;

static int read_record(const uint8_t *pkt, size_t len, size_t *off, record *r) {
    const uint8_t *h;
    if (read_name(pkt, len, off, r->owner, &r->owner_len) != 0 || *off + 10 > len) return -1;
    h = pkt + *off;
    r->type = (uint16_t)(h[0] << 8 | h[1]);
    r->klass = (uint16_t)((h[2] << 8 | h[3]) & 0x7fff); /* without mDNS's cache-flush bit */
    r->ttl = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    r->rdlen = (size_t)(h[8] << 8 | h[9]);
    r->rdata = *off + 10;
    if (r->rdata + r->rdlen > len) return -1;
    *off = r->rdata + r->rdlen;
    return 0;
}

/* A name inside the record's data at `at`; it must end inside the data too. */
static int rdata_name(const uint8_t *pkt, size_t len, const record *r, size_t at, uint8_t *out, size_t *out_len) {
    size_t off = at;
    if (at >= r->rdata + r->rdlen || read_name(pkt, len, &off, out, out_len) != 0) return -1;
    return off <= r->rdata + r->rdlen ? 0 : -1;
}

static mdns_instance *instance_named(mdns_table *t, const uint8_t *name, size_t len) {
    int i;
    for (i = 0; i < t->n; i++)
        if (name_eq(t->inst[i].name, t->inst[i].name_len, name, len)) return &t->inst[i];
    return NULL;
}

static void take_ptr(const uint8_t *pkt, size_t len, const record *r, const uint8_t *service, size_t service_len,
                     mdns_table *t) {
    uint8_t name[MDNS_NAME_MAX];
    size_t n;
    mdns_instance *i;
    if (!name_eq(r->owner, r->owner_len, service, service_len) || rdata_name(pkt, len, r, r->rdata, name, &n) != 0 ||
        instance_named(t, name, n) || t->n >= FL_MDNS_MAX)
        return;
    i = &t->inst[t->n++];
    memset(i, 0, sizeof *i);
    memcpy(i->name, name, n);
    i->name_len = n;
}

static void take_srv(const uint8_t *pkt, size_t len, const record *r, mdns_table *t) {
    mdns_instance *i = instance_named(t, r->owner, r->owner_len);
    const uint8_t *d = pkt + r->rdata;
    if (!i || i->have_srv || r->rdlen < 7) return;
    if (rdata_name(pkt, len, r, r->rdata + 6, i->target, &i->target_len) != 0) return;
    i->svc.port = (uint16_t)(d[4] << 8 | d[5]);
    i->have_srv = 1;
}

/* TXT: <length><key=value> strings (RFC 6763 §6). A string without '=' (a boolean attribute)
 * or with an empty key says nothing the core reads; what does not fit is left out. */
static void take_txt(const uint8_t *pkt, const record *r, mdns_table *t) {
    mdns_instance *i = instance_named(t, r->owner, r->owner_len);
    size_t p = r->rdata, end = r->rdata + r->rdlen;
    if (!i || i->have_txt) return;
    i->have_txt = 1;
    while (p < end) {
        size_t l = pkt[p];
        const uint8_t *s = pkt + p + 1, *eq;
        if (p + 1 + l > end) break;
        eq = memchr(s, '=', l);
        if (eq && eq > s)
            fl_mdns_add_txt(&i->svc, (const char *)s, (size_t)(eq - s), (const char *)eq + 1, l - (size_t)(eq - s) - 1);
        p += 1 + l;
    }
}

static void take_a(const uint8_t *pkt, const record *r, mdns_table *t) {
    const uint8_t *a = pkt + r->rdata;
    int k;
    if (r->rdlen != 4 || a[0] == 0 || a[0] >= 224) return; /* 0.x, multicast, broadcast: not a host */
    for (k = 0; k < t->n; k++) {
        mdns_instance *i = &t->inst[k];
        if (i->have_srv && !i->svc.addr[0] && name_eq(i->target, i->target_len, r->owner, r->owner_len))
            snprintf(i->svc.addr, sizeof i->svc.addr, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
    }
}

int mdns_parse_response(const uint8_t *pkt, size_t len, const uint8_t *service, size_t service_len, mdns_table *t) {
    size_t off = 12, records_at;
    unsigned qd, total, k;
    int pass, rc = 0;
    if (len < 12 || !(pkt[2] & 0x80)) return -1; /* not a response */
    qd = (unsigned)(pkt[4] << 8 | pkt[5]);
    total = (unsigned)(pkt[6] << 8 | pkt[7]) + (unsigned)(pkt[8] << 8 | pkt[9]) + (unsigned)(pkt[10] << 8 | pkt[11]);
    if (qd > 64) return -1;
    for (k = 0; k < qd; k++) {
        uint8_t name[MDNS_NAME_MAX];
        size_t n;
        if (read_name(pkt, len, &off, name, &n) != 0 || off + 4 > len) return -1;
        off += 4;
    }
    records_at = off;
    /* Three passes, so the order of the records does not matter: instances (PTR), then what
     * describes them (SRV, TXT), then their targets' addresses (A). */
    for (pass = 0; pass < 3; pass++) {
        off = records_at;
        for (k = 0; k < total && k < MDNS_MAX_RECORDS; k++) {
            record r;
            if (read_record(pkt, len, &off, &r) != 0) {
                rc = -1;
                break;
            }
            if (r.ttl == 0 || r.klass != 1) continue; /* a goodbye, or not the Internet class */
            if (pass == 0 && r.type == MDNS_TYPE_PTR) take_ptr(pkt, len, &r, service, service_len, t);
            if (pass == 1 && r.type == MDNS_TYPE_SRV) take_srv(pkt, len, &r, t);
            if (pass == 1 && r.type == MDNS_TYPE_TXT) take_txt(pkt, &r, t);
            if (pass == 2 && r.type == MDNS_TYPE_A) take_a(pkt, &r, t);
        }
    }
    return rc;
}

int mdns_complete(const mdns_instance *i) {
    return i->have_srv && i->have_txt && i->svc.port && i->svc.addr[0];
}

/* ---- the query on the network ---- */

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sends the query out of every IPv4 interface that is up and multicast-capable (a laptop may
 * have several), or the default one if there is none. */
static void send_query(int fd, const uint8_t *q, size_t n) {
    struct sockaddr_in to;
    struct ifaddrs *ifs = NULL, *i;
    int sent = 0;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(5353);
    to.sin_addr.s_addr = htonl(0xe00000fbu); /* 224.0.0.251 */
    if (getifaddrs(&ifs) == 0) {
        for (i = ifs; i; i = i->ifa_next) {
            struct in_addr a;
            if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
                !(i->ifa_flags & IFF_MULTICAST))
                continue;
            a = ((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
            if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &a, sizeof a) == 0 &&
                sendto(fd, q, n, 0, (const struct sockaddr *)&to, sizeof to) == (ssize_t)n)
                sent++;
        }
        freeifaddrs(ifs);
    }
    if (!sent) sendto(fd, q, n, 0, (const struct sockaddr *)&to, sizeof to);
}

/* The PTR question, and for what is still unresolved its SRV, TXT and A questions. */
static int round_query(const mdns_table *t, const uint8_t *svc, size_t svc_len, uint16_t id, uint8_t *buf,
                       size_t cap) {
    const uint8_t *names[1 + 3 * FL_MDNS_MAX];
    size_t lens[1 + 3 * FL_MDNS_MAX];
    uint16_t types[1 + 3 * FL_MDNS_MAX];
    int nq = 0, k;
    names[nq] = svc, lens[nq] = svc_len, types[nq++] = MDNS_TYPE_PTR;
    for (k = 0; k < t->n; k++) {
        const mdns_instance *i = &t->inst[k];
        if (!i->have_srv) names[nq] = i->name, lens[nq] = i->name_len, types[nq++] = MDNS_TYPE_SRV;
        if (!i->have_txt) names[nq] = i->name, lens[nq] = i->name_len, types[nq++] = MDNS_TYPE_TXT;
        if (i->have_srv && !i->svc.addr[0]) names[nq] = i->target, lens[nq] = i->target_len, types[nq++] = MDNS_TYPE_A;
    }
    return mdns_build_query(buf, cap, id, names, lens, types, nq);
}

int host_mdns_query(void *ctx, const char *service, const char *proto, uint32_t timeout_ms, fl_mdns_service *out,
                    int max) {
    static uint8_t buf[MDNS_PACKET_MAX];
    static mdns_table t;
    uint8_t svc[MDNS_NAME_MAX], q[2048];
    char dotted[160];
    int svc_len, fd, round = 0, found = 0, k;
    uint64_t start = mono_ms(), end = start + timeout_ms, settled = 0;
    uint16_t id = (uint16_t)(1 + randombytes_uniform(65535));
    struct sockaddr_in any;
    unsigned char ttl = 255, loop = 1;
    (void)ctx;
    if (snprintf(dotted, sizeof dotted, "%s.%s.local", service, proto) >= (int)sizeof dotted ||
        (svc_len = mdns_encode_name(dotted, svc, sizeof svc)) < 0)
        return 0;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    memset(&any, 0, sizeof any);
    any.sin_family = AF_INET; /* an ephemeral port: responders answer by unicast (RFC 6762 §6.7) */
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop); /* a server on this host */
    if (bind(fd, (const struct sockaddr *)&any, sizeof any) != 0) {
        close(fd);
        return 0;
    }
    memset(&t, 0, sizeof t);
    for (;;) {
        uint64_t now = mono_ms(), wake = end;
        struct pollfd pfd;
        int all = t.n > 0;
        for (k = 0; k < t.n; k++) all = all && mdns_complete(&t.inst[k]);
        /* Everything heard of is resolved: a moment more for other servers, then done. */
        if (all && !settled) settled = now + 250;
        if (now >= end || (settled && now >= settled)) break;
        if (round < 3 && now >= start + (uint64_t)round * timeout_ms / 3) {
            int n = round_query(&t, svc, (size_t)svc_len, id, q, sizeof q);
            if (n > 0) send_query(fd, q, (size_t)n);
            round++;
        }
        if (round < 3 && start + (uint64_t)round * timeout_ms / 3 < wake) wake = start + (uint64_t)round * timeout_ms / 3;
        if (settled && settled < wake) wake = settled;
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, wake > now ? (int)(wake - now) : 0) > 0) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
            /* an answer to this query (its id), from a responder (port 5353) */
            if (n >= 12 && fl >= sizeof from && from.sin_port == htons(5353) && buf[0] == (uint8_t)(id >> 8) &&
                buf[1] == (uint8_t)id)
                mdns_parse_response(buf, (size_t)n, svc, (size_t)svc_len, &t);
        }
    }
    close(fd);
    for (k = 0; k < t.n && found < max; k++)
        if (mdns_complete(&t.inst[k])) out[found++] = t.inst[k].svc;
    fprintf(stderr, "flotilla-ota-host: mdns: %d instance(s) of %s\n", found, dotted);
    return found;
}
