"""Advertises devices over mDNS with python-zeroconf, an implementation independent of Flotilla's.

Run by the e2e discovery test inside a network namespace:
    advertise.py '{"address": "10.213.3.2", "services": [{"type", "name", "host", "port", "txt"}]}'
Registers every service (with the TXT records real firmware publishes), prints "advertised",
waits for a line on stdin, then unregisters them all (goodbye packets) and exits.
"""

import json
import socket
import sys

from zeroconf import IPVersion, ServiceInfo, Zeroconf


def main() -> int:
    request = json.loads(sys.argv[1])
    address = request["address"]
    zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
    infos = []
    for s in request["services"]:
        info = ServiceInfo(
            s["type"],
            f'{s["name"]}.{s["type"]}',
            addresses=[socket.inet_aton(address)],
            port=s["port"],
            properties=s["txt"],
            server=f'{s["host"]}.local.',
        )
        zc.register_service(info, allow_name_change=False)
        infos.append(info)
    print("advertised", flush=True)
    sys.stdin.readline()
    for info in infos:
        zc.unregister_service(info)
    zc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
