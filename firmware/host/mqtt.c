/* See mqtt.h. */
#include "mqtt.h"

#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct host_mqtt {
    struct mosquitto *m;
    pthread_mutex_t lock;
    char *pending;
    size_t pending_len;
    char cmd[160], status[160], presence[512];
    int sent, acked;
};

static void on_connect(struct mosquitto *m, void *ud, int rc) {
    host_mqtt *h = ud;
    if (rc != 0) {
        fprintf(stderr, "flotilla-ota-host: mqtt: connection refused (%s)\n", mosquitto_connack_string(rc));
        return;
    }
    mosquitto_subscribe(m, NULL, h->cmd, 1);
    pthread_mutex_lock(&h->lock);
    h->sent++;
    pthread_mutex_unlock(&h->lock);
    mosquitto_publish(m, NULL, h->status, (int)strlen(h->presence), h->presence, 1, true);
    fprintf(stderr, "flotilla-ota-host: mqtt: connected, presence published\n");
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg) {
    host_mqtt *h = ud;
    (void)m;
    if (msg->payloadlen <= 0 || strcmp(msg->topic, h->cmd) != 0) return;
    pthread_mutex_lock(&h->lock);
    free(h->pending);
    h->pending = malloc((size_t)msg->payloadlen + 1);
    if (h->pending) {
        memcpy(h->pending, msg->payload, (size_t)msg->payloadlen);
        h->pending[msg->payloadlen] = '\0';
        h->pending_len = (size_t)msg->payloadlen;
    }
    pthread_mutex_unlock(&h->lock);
    fprintf(stderr, "flotilla-ota-host: mqtt: offer received\n");
}

static void on_publish(struct mosquitto *m, void *ud, int mid) {
    host_mqtt *h = ud;
    (void)m;
    (void)mid;
    pthread_mutex_lock(&h->lock);
    h->acked++;
    pthread_mutex_unlock(&h->lock);
}

host_mqtt *host_mqtt_start(const char *url, const char *device_id, const char *user, const char *pass,
                           const char *presence_json) {
    static const char *offline = "{\"online\":false}";
    char host[256] = "", u[128] = "", p[160] = "";
    const char *rest, *at, *colon;
    int port = 1883;
    host_mqtt *h;
    if (strncmp(url, "mqtt://", 7) != 0) {
        fprintf(stderr, "flotilla-ota-host: --mqtt must be mqtt://[user:pass@]host[:port]\n");
        return NULL;
    }
    rest = url + 7;
    at = strrchr(rest, '@');
    if (at) {
        colon = memchr(rest, ':', (size_t)(at - rest));
        if (!colon || (size_t)(colon - rest) >= sizeof u || (size_t)(at - colon - 1) >= sizeof p) return NULL;
        memcpy(u, rest, (size_t)(colon - rest));
        memcpy(p, colon + 1, (size_t)(at - colon - 1));
        rest = at + 1;
    }
    colon = strrchr(rest, ':');
    if (colon) {
        port = atoi(colon + 1);
        if ((size_t)(colon - rest) >= sizeof host) return NULL;
        memcpy(host, rest, (size_t)(colon - rest));
    } else if (strlen(rest) < sizeof host) {
        strcpy(host, rest);
    }
    if (!host[0] || port <= 0 || port > 65535) return NULL;
    if (user && pass) {
        snprintf(u, sizeof u, "%s", user);
        snprintf(p, sizeof p, "%s", pass);
    }
    h = calloc(1, sizeof *h);
    if (!h) return NULL;
    pthread_mutex_init(&h->lock, NULL);
    snprintf(h->cmd, sizeof h->cmd, "flotilla/%s/cmd/ota", device_id);
    snprintf(h->status, sizeof h->status, "flotilla/%s/status", device_id);
    snprintf(h->presence, sizeof h->presence, "%s", presence_json);
    mosquitto_lib_init();
    h->m = mosquitto_new(device_id, true, h);
    if (!h->m) return NULL;
    if (u[0]) mosquitto_username_pw_set(h->m, u, p);
    mosquitto_will_set(h->m, h->status, (int)strlen(offline), offline, 1, true);
    mosquitto_connect_callback_set(h->m, on_connect);
    mosquitto_message_callback_set(h->m, on_message);
    mosquitto_publish_callback_set(h->m, on_publish);
    if (mosquitto_connect(h->m, host, port, 30) != MOSQ_ERR_SUCCESS || mosquitto_loop_start(h->m) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "flotilla-ota-host: mqtt: cannot connect to %s:%d\n", host, port);
        return NULL;
    }
    return h;
}

int host_mqtt_publish(void *ctx, const char *topic, const char *payload, int retain) {
    host_mqtt *h = ctx;
    int rc;
    pthread_mutex_lock(&h->lock);
    h->sent++;
    pthread_mutex_unlock(&h->lock);
    rc = mosquitto_publish(h->m, NULL, topic, (int)strlen(payload), payload, 1, retain != 0);
    return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

char *host_mqtt_take(host_mqtt *h, size_t *len) {
    char *p;
    pthread_mutex_lock(&h->lock);
    p = h->pending;
    *len = h->pending_len;
    h->pending = NULL;
    pthread_mutex_unlock(&h->lock);
    return p;
}

void host_mqtt_stop(host_mqtt *h) {
    int i, done = 0;
    struct timespec ts = {0, 20 * 1000000L};
    for (i = 0; i < 100 && !done; i++) {
        pthread_mutex_lock(&h->lock);
        done = h->acked >= h->sent;
        pthread_mutex_unlock(&h->lock);
        if (!done) nanosleep(&ts, NULL);
    }
    mosquitto_disconnect(h->m);
    mosquitto_loop_stop(h->m, false);
    mosquitto_destroy(h->m);
}
