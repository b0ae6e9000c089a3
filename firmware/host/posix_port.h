/* The POSIX port of the Flotilla OTA core: libcurl for HTTP(S), libsodium for SHA-256, Ed25519 and
 * base64, files in a state directory for the OTA slot and the key-value store. */
#ifndef FLOTILLA_POSIX_PORT_H
#define FLOTILLA_POSIX_PORT_H

#include "flotilla_ota.h"

typedef struct {
    char dir[512];        /* state directory */
    const char *tls_pin;  /* CURLOPT_PINNEDPUBLICKEY ("sha256//…" or a PEM/DER file), NULL: none */
    const char *cacert;   /* CURLOPT_CAINFO, NULL: the system's */
    long timeout_s;       /* per request */
    /* GET body bytes handed to the sink so far in this request */
    uint64_t got;
    fl_sink_fn sink;
    void *sink_ctx;
    int *status;
    void *curl;
} posix_port;

/* Fills `port` to use `pp`; creates the state directory. Returns 0 on success. */
int posix_port_init(posix_port *pp, fl_port *port, const char *dir);
/* State files: the version a commit made pending (the "bootloader" boots it next), the confirmed
 * running version. Each returns 1 and fills buf if present. */
int posix_read_file(const posix_port *pp, const char *name, char *buf, size_t cap);
int posix_write_file(const posix_port *pp, const char *name, const char *value);
void posix_remove_file(const posix_port *pp, const char *name);

#endif
