/* MQTT push for the host device (libmosquitto): the device's own login, retained presence with a
 * Last Will on flotilla/<id>/status, offers from flotilla/<id>/cmd/ota, reports on .../status/ota. */
#ifndef FLOTILLA_HOST_MQTT_H
#define FLOTILLA_HOST_MQTT_H

#include <stddef.h>

typedef struct host_mqtt host_mqtt;

/* url: mqtt://[user:pass@]host[:port]; user/pass (the enrolment's login) win over the URL's.
 * Returns NULL (with a message) on a bad URL or a failed connect. */
host_mqtt *host_mqtt_start(const char *url, const char *device_id, const char *user, const char *pass,
                           const char *presence_json);
/* The port's mqtt_publish (ctx: the host_mqtt). */
int host_mqtt_publish(void *ctx, const char *topic, const char *payload, int retain);
/* An offer received since the last call (malloc'd, NUL-terminated), or NULL. */
char *host_mqtt_take(host_mqtt *h, size_t *len);
/* Waits (bounded) until published messages are acknowledged, then disconnects. */
void host_mqtt_stop(host_mqtt *h);

#endif
