/* flotilla-ota-host: the Flotilla OTA core on a POSIX port, a real device process for tests.
 * It checks in until stopped, "flashes" into its state directory and "reboots" by re-executing
 * itself, then runs the version it flashed (a trial boot confirmed by a health check). */
#include "mdns.h"
#include "mqtt.h"
#include "posix_port.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE =
    "usage: flotilla-ota-host [--server URL|mdns] --device-id ID --model M --chip C --version V --state-dir DIR\n"
    "                         --pubkey FILE [--interval SECONDS] [--mqtt URL] [--mac MAC]\n"
    "                         [--secure-version N] [--slot-size BYTES] [--allow-downgrade] [--no-reenrol]\n"
    "                         [--pin sha256//BASE64|FILE] [--cacert FILE] [--once]\n"
    "  --server        the device server; `mdns` or none: found by mDNS (_flotilla._tcp), over\n"
    "                  HTTPS with the --pin'ed key if --pin is given, else plain HTTP\n"
    "  --pubkey FILE   the site key: `flotilla keys export` (PEM) or its 64 hex digits\n"
    "  --no-reenrol    keep the first secret: refuse a new credential (a re-key)\n"
    "  --once          check in once (and once more after an update), then exit\n"
    "  FLOTILLA_OTA_HOST_UNHEALTHY=1 makes the health check after an update fail (rollback)\n";

static host_mqtt *g_mqtt;

static int publish(void *ctx, const char *topic, const char *payload, int retain) {
    (void)ctx;
    return g_mqtt ? host_mqtt_publish(g_mqtt, topic, payload, retain) : -1;
}

/* Re-executes this program: the "reboot" into what the state dir now holds. */
static int reboot(char **argv) {
    fprintf(stderr, "flotilla-ota-host: rebooting\n");
    if (g_mqtt) host_mqtt_stop(g_mqtt);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    perror("flotilla-ota-host: re-exec");
    return 1;
}

static int die(const char *msg, const char *arg) {
    fprintf(stderr, "flotilla-ota-host: %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", USAGE);
    return 2;
}

/* Reads an Ed25519 public key: 64 hex digits, or a PEM SubjectPublicKeyInfo. */
static int read_pubkey(const char *file, uint8_t pk[32]) {
    static const uint8_t spki[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    char text[1024], b64[512];
    uint8_t der[64];
    size_t n, len = 0, o = 0;
    const char *p, *line;
    FILE *f = fopen(file, "rb");
    if (!f) return -1;
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    if (!strstr(text, "-----BEGIN PUBLIC KEY-----")) {
        const char *end;
        if (sodium_hex2bin(pk, 32, text, n, " \r\n\t", &len, &end) != 0 || len != 32) return -1;
        return *end == '\0' ? 0 : -1;
    }
    for (line = text; *line; line = p + (*p != '\0')) {
        p = strchr(line, '\n');
        if (!p) p = line + strlen(line);
        if (line[0] != '-' && (size_t)(p - line) + o < sizeof b64) {
            memcpy(b64 + o, line, (size_t)(p - line));
            o += (size_t)(p - line);
        }
    }
    b64[o] = '\0';
    if (sodium_base642bin(der, sizeof der, b64, o, "\r", &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != 44 || memcmp(der, spki, sizeof spki) != 0)
        return -1;
    memcpy(pk, der + 12, 32);
    return 0;
}

static const char *result_str(fl_result r) {
    switch (r) {
    case FL_OK_NO_UPDATE: return "no update";
    case FL_OK_REBOOT: return "update applied";
    case FL_OK_IGNORED: return "job already handled";
    case FL_PENDING_APPROVAL: return "waiting for approval";
    case FL_REJECTED: return "offer rejected";
    case FL_FAILED: return "update failed";
    case FL_ERR_NETWORK: return "check-in failed";
    case FL_ERR_UNAUTHORIZED: return "unauthorized";
    default: return "error";
    }
}

int main(int argc, char **argv) {
    static posix_port pp;
    static fl_client cl;
    fl_port port;
    fl_config cfg;
    const char *state = NULL, *pubkey = NULL, *mqtt = NULL;
    char version[FL_VERSION_MAX], mac[18], found[FL_SERVER_MAX] = "";
    unsigned long interval = 600;
    uint32_t mqtt_login = 0;
    int once = 0, i, booted;
    char *end;

    memset(&cfg, 0, sizeof cfg);
    cfg.allow_reenrol = 1;
    cfg.slot_size = 16u * 1024 * 1024;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--once")) once = 1, takes = 0;
        else if (!strcmp(a, "--allow-downgrade")) cfg.allow_downgrade = 1, takes = 0;
        else if (!strcmp(a, "--no-reenrol")) cfg.allow_reenrol = 0, takes = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return fputs(USAGE, stdout), 0;
        else if (!strstr(" --server --device-id --model --chip --version --state-dir --pubkey --mqtt --mac --pin"
                         " --cacert --interval --secure-version --slot-size ",
                         a) ||
                 strncmp(a, "--", 2) != 0 || strchr(a, ' '))
            return die("unknown argument", a);
        else if (!v) return die("missing value for", a);
        else if (!strcmp(a, "--server")) cfg.server = v;
        else if (!strcmp(a, "--device-id")) cfg.device_id = v;
        else if (!strcmp(a, "--model")) cfg.model = v;
        else if (!strcmp(a, "--chip")) cfg.chip = v;
        else if (!strcmp(a, "--version")) cfg.version = v;
        else if (!strcmp(a, "--state-dir")) state = v;
        else if (!strcmp(a, "--pubkey")) pubkey = v;
        else if (!strcmp(a, "--mqtt")) mqtt = v;
        else if (!strcmp(a, "--mac")) cfg.mac = v;
        else if (!strcmp(a, "--pin")) pp.tls_pin = v;
        else if (!strcmp(a, "--cacert")) pp.cacert = v;
        else if (!strcmp(a, "--interval")) {
            interval = strtoul(v, &end, 10);
            if (*end || interval < 1 || interval > 86400) return die("--interval wants 1..86400 seconds", v);
        } else if (!strcmp(a, "--secure-version")) {
            unsigned long sv = strtoul(v, &end, 10);
            if (*end || sv > 0xffffffffUL) return die("bad --secure-version", v);
            cfg.secure_version = (uint32_t)sv;
        } else if (!strcmp(a, "--slot-size")) {
            cfg.slot_size = strtoull(v, &end, 10);
            if (*end || !cfg.slot_size) return die("bad --slot-size", v);
        } else
            return die("unknown argument", a);
        i += takes;
    }
    if (!cfg.device_id || !cfg.model || !cfg.chip || !cfg.version || !state || !pubkey)
        return die("--device-id, --model, --chip, --version, --state-dir and --pubkey are required", NULL);
    if (cfg.server && !strcmp(cfg.server, "mdns")) cfg.server = NULL;
    if (cfg.server && strncmp(cfg.server, "http://", 7) != 0 && strncmp(cfg.server, "https://", 8) != 0)
        return die("--server must be an http:// or https:// URL, or mdns", cfg.server);
    if (strlen(cfg.device_id) >= FL_ID_MAX) return die("--device-id is too long", cfg.device_id);
    {
        int ok;
        fl_semver_cmp(cfg.version, "0.0.0", &ok);
        if (!ok) return die("--version is not SemVer", cfg.version);
    }
    if (mqtt && strncmp(mqtt, "mqtt://", 7) != 0) return die("--mqtt must be mqtt://[user:pass@]host[:port]", mqtt);
    if (sodium_init() < 0) return die("libsodium failed to initialise", NULL);
    if (read_pubkey(pubkey, cfg.pubkey) != 0) return die("--pubkey is not an Ed25519 key (PEM or hex)", pubkey);
    if (posix_port_init(&pp, &port, state) != 0) return die("cannot use --state-dir", state);
    cfg.interval_secs = (uint32_t)interval;
    cfg.tls_pin = pp.tls_pin;
    if (!cfg.mac) {
        /* a stable, locally administered MAC derived from the device id */
        uint8_t h[32];
        crypto_hash_sha256(h, (const uint8_t *)cfg.device_id, strlen(cfg.device_id));
        snprintf(mac, sizeof mac, "02:%02X:%02X:%02X:%02X:%02X", h[0], h[1], h[2], h[3], h[4]);
        cfg.mac = mac;
    }
    /* The "bootloader": a pending image boots on trial, else the confirmed one, else --version. */
    if (posix_read_file(&pp, "pending-version", version, sizeof version) ||
        posix_read_file(&pp, "running-version", version, sizeof version))
        cfg.version = version;
    if (mqtt) port.mqtt_publish = publish;
    port.mdns_query = host_mdns_query;
    if (fl_init(&cl, &cfg, &port) != 0) return die("bad configuration", NULL);
    fprintf(stderr, "flotilla-ota-host: %s running %s (%s, %s)\n", cfg.device_id, cfg.version, cfg.model, cfg.chip);

    booted = fl_after_boot(&cl, getenv("FLOTILLA_OTA_HOST_UNHEALTHY") == NULL);
    if (booted < 0) {
        fprintf(stderr, "flotilla-ota-host: health check failed: rolled back\n");
        return reboot(argv);
    }
    if (booted > 0) fprintf(stderr, "flotilla-ota-host: update to %s confirmed\n", cfg.version);

    for (;;) {
        uint64_t until;
        fl_result r = fl_check_in(&cl);
        if (cl.cfg.server && cl.cfg.server == cl.found && strcmp(found, cl.found) != 0) {
            snprintf(found, sizeof found, "%s", cl.found);
            fprintf(stderr, "flotilla-ota-host: server found by mDNS: %s\n", found);
        }
        fprintf(stderr, "flotilla-ota-host: check-in: %s\n", result_str(r));
        if (r == FL_OK_REBOOT) return reboot(argv);
        if (once) return (r == FL_OK_NO_UPDATE || r == FL_OK_IGNORED) ? 0 : 1;
        if (g_mqtt && cl.credentials != mqtt_login) {
            /* A new credential (a re-key): its broker login replaces the old one. */
            host_mqtt_stop(g_mqtt);
            g_mqtt = NULL;
            cl.cfg.report_via_mqtt = 0;
        }
        if (mqtt && !g_mqtt && (r == FL_OK_NO_UPDATE || r == FL_OK_IGNORED)) {
            /* After the check-in that enrolled us: our own broker login, if we were given one. */
            char user[96], pass[128], presence[512];
            int have = port.kv_get(port.ctx, FL_KV_MQTT_USER, user, sizeof user) > 0 &&
                       port.kv_get(port.ctx, FL_KV_MQTT_PASS, pass, sizeof pass) > 0;
            if (fl_presence_json(presence, sizeof presence, &cfg, NULL) < 0) return 1;
            g_mqtt = host_mqtt_start(mqtt, cfg.device_id, have ? user : NULL, have ? pass : NULL, presence);
            if (!g_mqtt) return die("--mqtt: cannot connect", mqtt);
            mqtt_login = cl.credentials;
            cl.cfg.report_via_mqtt = 1;
        }
        /* the interval with +-20 % jitter, longer after refusals; MQTT offers are taken as they come */
        until = port.now_ms(port.ctx) + fl_next_check_in_ms(&cl, randombytes_random());
        while (port.now_ms(port.ctx) < until) {
            size_t len;
            char *offer = g_mqtt ? host_mqtt_take(g_mqtt, &len) : NULL;
            if (offer) {
                r = fl_handle_offer(&cl, offer, len);
                free(offer);
                fprintf(stderr, "flotilla-ota-host: mqtt offer: %s\n", result_str(r));
                if (r == FL_OK_REBOOT) return reboot(argv);
            }
            port.sleep_ms(port.ctx, 50);
        }
    }
}
