/* Unit tests of the host port's mDNS message code (mdns.c), under ASan and UBSan: the answers a
 * responder gives, and malformed and hostile packets (truncated at every length, compression
 * loops, out-of-bounds pointers and lengths, oversized names, random bytes and mutations). */
#include "mdns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;
#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        checks++;                                                                                                      \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)

/* ---- building packets ---- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} pkt;

static void u8(pkt *p, unsigned v) {
    p->b[p->n++] = (uint8_t)v;
}
static void u16(pkt *p, unsigned v) {
    u8(p, v >> 8);
    u8(p, v & 0xff);
}
static void u32(pkt *p, unsigned long v) {
    u16(p, (unsigned)(v >> 16));
    u16(p, (unsigned)(v & 0xffff));
}
static void label(pkt *p, const char *s) {
    size_t n = strlen(s);
    u8(p, (unsigned)n);
    memcpy(p->b + p->n, s, n);
    p->n += n;
}
static void ptr(pkt *p, size_t to) {
    u16(p, 0xc000u | (unsigned)to);
}
static void header(pkt *p, unsigned id, unsigned flags, unsigned qd, unsigned an, unsigned ns, unsigned ar) {
    p->n = 0;
    u16(p, id);
    u16(p, flags);
    u16(p, qd);
    u16(p, an);
    u16(p, ns);
    u16(p, ar);
}
/* A record's fixed part; returns where its rdlength goes (patched by rdlen_end). */
static size_t rr(pkt *p, unsigned type, unsigned klass, unsigned long ttl) {
    u16(p, type);
    u16(p, klass);
    u32(p, ttl);
    u16(p, 0);
    return p->n - 2;
}
static void rdlen_end(pkt *p, size_t at) {
    size_t len = p->n - at - 2;
    p->b[at] = (uint8_t)(len >> 8);
    p->b[at + 1] = (uint8_t)len;
}
static void txt_string(pkt *p, const char *s) {
    label(p, s);
}

static const char *FP = "0123456789abcdef";
static const char *FPS = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
static uint8_t SVC[64];
static size_t SVC_LEN;

/* The answer a responder (mdns-sd, for a legacy one-shot query) gives: the question echoed, the
 * PTR, and SRV, TXT, A, AAAA and NSEC records as additionals, all names compressed. With
 * ptr_last, the PTR comes after the rest. */
static void answer(pkt *p, int ptr_last, unsigned long ptr_ttl) {
    size_t q, inst, host, at;
    header(p, 0x1234, 0x8400, 1, 1, 0, 5);
    q = p->n;
    label(p, "_flotilla");
    label(p, "_tcp");
    label(p, "local");
    u8(p, 0);
    u16(p, 12);
    u16(p, 1);
    /* the instance name appears first in the PTR's data, or (ptr_last) in the SRV's owner */
    if (!ptr_last) {
        ptr(p, q);
        at = rr(p, 12, 1, ptr_ttl);
        inst = p->n;
        label(p, "Flotilla on box");
        ptr(p, q);
        rdlen_end(p, at);
    } else {
        inst = p->n;
        label(p, "Flotilla on box");
        ptr(p, q);
    }
    if (!ptr_last) ptr(p, inst);
    at = rr(p, 33, 0x8001, 120);
    u16(p, 0);
    u16(p, 0);
    u16(p, 8070);
    host = p->n;
    label(p, "box");
    ptr(p, q + 1 + 9 + 1 + 4); /* "local" */
    rdlen_end(p, at);
    ptr(p, inst);
    at = rr(p, 16, 0x8001, 4500);
    txt_string(p, "api=/api/v1");
    {
        char s[80];
        snprintf(s, sizeof s, "fp=%s", FP);
        txt_string(p, s);
        txt_string(p, "v=0.1.0");
        txt_string(p, "tls=8443");
        snprintf(s, sizeof s, "fps=%s", FPS);
        txt_string(p, s);
        txt_string(p, "flag");     /* a boolean attribute: not kept */
        txt_string(p, "=novalue"); /* an empty key: not kept */
    }
    rdlen_end(p, at);
    ptr(p, host);
    at = rr(p, 1, 0x8001, 120);
    u8(p, 10), u8(p, 213), u8(p, 5), u8(p, 1);
    rdlen_end(p, at);
    ptr(p, host);
    at = rr(p, 28, 0x8001, 120);
    {
        int k;
        for (k = 0; k < 16; k++) u8(p, k == 0 ? 0xfe : k == 1 ? 0x80 : k);
    }
    rdlen_end(p, at);
    ptr(p, host);
    at = rr(p, 47, 0x8001, 120);
    ptr(p, host);
    u8(p, 0);
    u8(p, 4);
    u32(p, 0x40000008UL);
    rdlen_end(p, at);
    if (ptr_last) {
        ptr(p, q);
        at = rr(p, 12, 1, ptr_ttl);
        ptr(p, inst);
        rdlen_end(p, at);
    }
}

/* What the parser may ever leave: terminated strings, lengths within their buffers. */
static void check_sane(const mdns_table *t) {
    int k;
    CHECK(t->n >= 0 && t->n <= FL_MDNS_MAX);
    for (k = 0; k < t->n; k++) {
        const mdns_instance *i = &t->inst[k];
        CHECK(memchr(i->svc.addr, '\0', sizeof i->svc.addr) != NULL);
        CHECK(i->svc.txt_len <= FL_MDNS_TXT_CAP);
        CHECK(i->name_len >= 1 && i->name_len <= MDNS_NAME_MAX && i->target_len <= MDNS_NAME_MAX);
        if (i->svc.txt_len) CHECK(i->svc.txt[i->svc.txt_len - 1] == '\0');
    }
}

static int parse(const pkt *p, mdns_table *t) {
    memset(t, 0, sizeof *t);
    return mdns_parse_response(p->b, p->n, SVC, SVC_LEN, t);
}

static void test_names_and_queries(void) {
    uint8_t out[300], q[600];
    const uint8_t *names[2];
    size_t lens[2];
    uint16_t types[2] = {12, 16};
    char long_label[80], long_name[400];
    int n;
    static const uint8_t want[] = {9, '_', 'f', 'l', 'o', 't', 'i', 'l', 'l', 'a', 4, '_', 't', 'c', 'p', 5,
                                   'l', 'o', 'c', 'a', 'l', 0};
    CHECK(mdns_encode_name("_flotilla._tcp.local", out, sizeof out) == (int)sizeof want);
    CHECK(memcmp(out, want, sizeof want) == 0);
    CHECK(mdns_encode_name("a..local", out, sizeof out) == -1);
    CHECK(mdns_encode_name("", out, sizeof out) == -1);
    CHECK(mdns_encode_name("a.local.", out, sizeof out) == -1);
    CHECK(mdns_encode_name("_flotilla._tcp.local", out, 10) == -1);
    memset(long_label, 'x', 64);
    long_label[64] = '\0';
    CHECK(mdns_encode_name(long_label, out, sizeof out) == -1);
    long_label[63] = '\0';
    CHECK(mdns_encode_name(long_label, out, sizeof out) == 65);
    snprintf(long_name, sizeof long_name, "%s.%s.%s.%s.local", long_label, long_label, long_label, long_label);
    CHECK(mdns_encode_name(long_name, out, sizeof out) == -1); /* 4*64 + 7 > 255 */

    names[0] = want, lens[0] = sizeof want;
    names[1] = want, lens[1] = sizeof want;
    n = mdns_build_query(q, sizeof q, 0xbeef, names, lens, types, 2);
    CHECK(n == 12 + 2 * ((int)sizeof want + 4));
    CHECK(q[0] == 0xbe && q[1] == 0xef && q[2] == 0 && q[3] == 0 && q[4] == 0 && q[5] == 2 && q[7] == 0);
    CHECK(q[12 + sizeof want] == 0 && q[12 + sizeof want + 1] == 12 && q[12 + sizeof want + 3] == 1);
    CHECK(mdns_build_query(q, 20, 1, names, lens, types, 2) == -1);
    CHECK(mdns_build_query(q, sizeof q, 1, names, lens, types, 0) == -1);
}

static void test_answer(void) {
    pkt p;
    mdns_table t;
    const mdns_instance *i;
    int order;
    for (order = 0; order < 2; order++) {
        answer(&p, order, 10);
        CHECK(parse(&p, &t) == 0);
        CHECK(t.n == 1);
        i = &t.inst[0];
        CHECK(mdns_complete(i));
        CHECK(strcmp(i->svc.addr, "10.213.5.1") == 0);
        CHECK(i->svc.port == 8070);
        CHECK(fl_mdns_txt(&i->svc, "api") && strcmp(fl_mdns_txt(&i->svc, "api"), "/api/v1") == 0);
        CHECK(fl_mdns_txt(&i->svc, "fp") && strcmp(fl_mdns_txt(&i->svc, "fp"), FP) == 0);
        CHECK(fl_mdns_txt(&i->svc, "tls") && strcmp(fl_mdns_txt(&i->svc, "tls"), "8443") == 0);
        CHECK(fl_mdns_txt(&i->svc, "fps") && strcmp(fl_mdns_txt(&i->svc, "fps"), FPS) == 0);
        CHECK(fl_mdns_txt(&i->svc, "flag") == NULL && fl_mdns_txt(&i->svc, "") == NULL);
        check_sane(&t);
    }
    /* taken into a table that already knows the instance: nothing doubled */
    CHECK(mdns_parse_response(p.b, p.n, SVC, SVC_LEN, &t) == 0 && t.n == 1);
    /* a goodbye (TTL 0) is not an instance */
    answer(&p, 0, 0);
    CHECK(parse(&p, &t) == 0 && t.n == 0);
    /* names compare without regard to case */
    {
        uint8_t upper[64];
        size_t k;
        memcpy(upper, SVC, SVC_LEN);
        for (k = 0; k < SVC_LEN; k++)
            if (upper[k] >= 'a' && upper[k] <= 'z') upper[k] = (uint8_t)(upper[k] - 32);
        answer(&p, 0, 10);
        memset(&t, 0, sizeof t);
        CHECK(mdns_parse_response(p.b, p.n, upper, SVC_LEN, &t) == 0 && t.n == 1 && mdns_complete(&t.inst[0]));
    }
    /* another service's answer adds nothing */
    {
        uint8_t other[64];
        int n = mdns_encode_name("_http._tcp.local", other, sizeof other);
        answer(&p, 0, 10);
        memset(&t, 0, sizeof t);
        CHECK(mdns_parse_response(p.b, p.n, other, (size_t)n, &t) == 0 && t.n == 0);
    }
    /* a query is not an answer */
    answer(&p, 0, 10);
    p.b[2] = 0;
    CHECK(parse(&p, &t) == -1 && t.n == 0);
}

static void test_truncated_everywhere(void) {
    pkt p, cut;
    mdns_table t;
    size_t len;
    answer(&p, 0, 10);
    for (len = 0; len < p.n; len++) {
        memcpy(cut.b, p.b, len);
        cut.n = len;
        CHECK(parse(&cut, &t) == -1);
        check_sane(&t);
        /* whatever was taken before the cut is never complete with made-up parts */
        if (t.n == 1 && mdns_complete(&t.inst[0])) CHECK(strcmp(t.inst[0].svc.addr, "10.213.5.1") == 0);
    }
}

/* A response with one question, whose name is written at offset 12 by `name` */
static void hostile_name(pkt *p, void (*name)(pkt *)) {
    header(p, 1, 0x8400, 1, 0, 0, 0);
    name(p);
    u16(p, 12);
    u16(p, 1);
}
static void self_pointer(pkt *p) {
    ptr(p, 12);
}
static void forward_pointer(pkt *p) {
    ptr(p, 40);
    label(p, "aaaaaaaaaaaaaaaaaaaaaaaaa");
    u8(p, 0);
}
static void reserved_label(pkt *p) {
    u8(p, 0x40);
    u8(p, 'a');
    u8(p, 0);
}
static void oversized_name(pkt *p) {
    char l[64];
    int k;
    memset(l, 'x', 63);
    l[63] = '\0';
    for (k = 0; k < 5; k++) label(p, l);
    u8(p, 0);
}
static void unterminated(pkt *p) {
    label(p, "abc");
}

static void test_hostile(void) {
    pkt p;
    mdns_table t;
    size_t at;
    int k;
    hostile_name(&p, self_pointer);
    CHECK(parse(&p, &t) == -1);
    hostile_name(&p, forward_pointer);
    CHECK(parse(&p, &t) == -1);
    hostile_name(&p, reserved_label);
    CHECK(parse(&p, &t) == -1);
    hostile_name(&p, oversized_name);
    CHECK(parse(&p, &t) == -1);
    hostile_name(&p, unterminated);
    CHECK(parse(&p, &t) == -1);

    /* a chain of questions, each named by a pointer to the one before: a record owned by a
     * pointer to the last takes one jump more; MDNS_MAX_JUMPS are followed, one more is not */
    for (k = MDNS_MAX_JUMPS - 1; k <= MDNS_MAX_JUMPS; k++) {
        size_t pos[MDNS_MAX_JUMPS + 1];
        int j;
        header(&p, 1, 0x8400, (unsigned)k + 1, 1, 0, 0);
        pos[0] = p.n;
        label(&p, "_flotilla"), label(&p, "_tcp"), label(&p, "local"), u8(&p, 0);
        u16(&p, 12), u16(&p, 1);
        for (j = 1; j <= k; j++) {
            pos[j] = p.n;
            ptr(&p, pos[j - 1]);
            u16(&p, 12), u16(&p, 1);
        }
        ptr(&p, pos[k]);
        at = rr(&p, 12, 1, 10);
        label(&p, "x");
        ptr(&p, pos[0]);
        rdlen_end(&p, at);
        CHECK(parse(&p, &t) == (k + 1 <= MDNS_MAX_JUMPS ? 0 : -1));
        CHECK(t.n == (k + 1 <= MDNS_MAX_JUMPS ? 1 : 0));
    }

    /* rdlength past the end */
    answer(&p, 0, 10);
    p.b[p.n - 10] = 0xff; /* the NSEC's rdlength (8 bytes of data follow it), high byte */
    CHECK(parse(&p, &t) == -1);
    CHECK(t.n == 1 && mdns_complete(&t.inst[0])); /* what came before it is kept */
    check_sane(&t);

    /* counts that promise more than the packet holds, and too many questions */
    answer(&p, 0, 10);
    p.b[6] = p.b[7] = p.b[8] = p.b[9] = p.b[10] = p.b[11] = 0xff;
    CHECK(parse(&p, &t) == -1);
    check_sane(&t);
    answer(&p, 0, 10);
    p.b[5] = 65;
    CHECK(parse(&p, &t) == -1 && t.n == 0);

    /* a PTR whose name runs past its rdlength; an A of 3 bytes; addresses that are not a host */
    {
        static const uint8_t bad_addrs[][4] = {{0, 0, 0, 0}, {224, 0, 0, 251}, {255, 255, 255, 255}};
        size_t a_at;
        answer(&p, 0, 10);
        p.b[12 + 22 + 4 + 2 + 2 + 2 + 4 + 1] = 3; /* the PTR's rdlength: 3, its name is longer */
        CHECK(parse(&p, &t) == -1 && t.n == 0);
        answer(&p, 0, 10);
        /* the A record: find its data (10.213.5.1) */
        for (a_at = 0; a_at + 4 <= p.n; a_at++)
            if (p.b[a_at] == 10 && p.b[a_at + 1] == 213 && p.b[a_at + 2] == 5 && p.b[a_at + 3] == 1) break;
        for (k = 0; k < 3; k++) {
            memcpy(p.b + a_at, bad_addrs[k], 4);
            CHECK(parse(&p, &t) == 0 && t.n == 1 && !mdns_complete(&t.inst[0]));
        }
        memcpy(p.b + a_at, "\x0a\xd5\x05\x01", 4);
        p.b[a_at - 1] = 3; /* rdlength 3: the rest of the packet is now misaligned */
        CHECK(parse(&p, &t) == -1 && !mdns_complete(&t.inst[0]));
    }

    /* a TXT string longer than its record: the strings before it are kept */
    {
        size_t api;
        answer(&p, 0, 10);
        for (api = 0; api + 7 <= p.n; api++)
            if (memcmp(p.b + api, "v=0.1.0", 7) == 0) break;
        p.b[api - 1] = 200;
        CHECK(parse(&p, &t) == 0 && t.n == 1);
        CHECK(fl_mdns_txt(&t.inst[0].svc, "fp") != NULL && fl_mdns_txt(&t.inst[0].svc, "v") == NULL &&
              fl_mdns_txt(&t.inst[0].svc, "tls") == NULL);
    }

    /* more instances than kept: the first FL_MDNS_MAX */
    {
        size_t q;
        header(&p, 1, 0x8400, 1, 6, 0, 0);
        q = p.n;
        label(&p, "_flotilla"), label(&p, "_tcp"), label(&p, "local"), u8(&p, 0);
        u16(&p, 12), u16(&p, 1);
        for (k = 0; k < 6; k++) {
            char name[8];
            snprintf(name, sizeof name, "s%d", k);
            ptr(&p, q);
            at = rr(&p, 12, 1, 10);
            label(&p, name);
            ptr(&p, q);
            rdlen_end(&p, at);
        }
        CHECK(parse(&p, &t) == 0 && t.n == FL_MDNS_MAX);
        CHECK(t.inst[3].name[1] == 's' && t.inst[3].name[2] == '3');
    }
}

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;
static unsigned rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}

static void test_fuzz(void) {
    pkt p, base;
    mdns_table t;
    int k, j;
    answer(&base, 0, 10);
    for (k = 0; k < 20000; k++) {
        /* random bytes behind a response header, names compressed to random places */
        p.n = rnd() % 700;
        for (j = 0; j < (int)p.n; j++) p.b[j] = (uint8_t)rnd();
        if (p.n > 2) p.b[2] |= 0x80;
        parse(&p, &t);
        check_sane(&t);
        /* the genuine answer with a few bytes changed */
        p = base;
        for (j = 0; j < 1 + (int)(rnd() % 6); j++) p.b[rnd() % p.n] = (uint8_t)rnd();
        if (rnd() % 4 == 0) p.n = rnd() % (p.n + 1);
        parse(&p, &t);
        check_sane(&t);
    }
}

int main(void) {
    int n = mdns_encode_name("_flotilla._tcp.local", SVC, sizeof SVC);
    if (n < 0) return 2;
    SVC_LEN = (size_t)n;
    test_names_and_queries();
    test_answer();
    test_truncated_everywhere();
    test_hostile();
    test_fuzz();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
