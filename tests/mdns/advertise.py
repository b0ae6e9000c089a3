"""Advertises devices over mDNS with python-zeroconf, an implementation independent of Flotilla's.

Run by the e2e discovery tests inside a network namespace:
    advertise.py '{"address": "10.213.3.2", "ttl": 120, "services": [{"type", "name", "host", "port", "txt", "address"?}]}'
(each device answers at its own `address` when given, else at the advertiser's)
Registers every service (with the TXT records real firmware publishes; records live `ttl`
seconds, 120 by default as real firmware's), prints "advertised", then obeys lines on stdin:
    move ADDRESS  the devices now answer at ADDRESS (announced as real devices do after DHCP)
    vanish        exit at once without goodbye packets (a device losing power): records expire
    bye / EOF     unregister every service (goodbye packets) and exit
Each command is acknowledged with a line ("moved", ...) once done.
"""

import json
import os
import socket
import sys

from zeroconf import IPVersion, ServiceInfo, Zeroconf


def main() -> int:
    request = json.loads(sys.argv[1])
    address = request["address"]
    ttl = int(request.get("ttl", 120))
    zc = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
    infos = []
    for s in request["services"]:
        info = ServiceInfo(
            s["type"],
            f'{s["name"]}.{s["type"]}',
            addresses=[socket.inet_aton(s.get("address", address))],
            port=s["port"],
            properties=s["txt"],
            server=f'{s["host"]}.local.',
            host_ttl=ttl,
            other_ttl=ttl,
        )
        zc.register_service(info, allow_name_change=False)
        infos.append(info)
    print("advertised", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["move"] and len(words) == 2:
            for info in infos:
                info.addresses = [socket.inet_aton(words[1])]
                zc.update_service(info)
            print("moved", flush=True)
        elif words == ["vanish"]:
            print("vanished", flush=True)
            os._exit(0)
        elif words == ["bye"]:
            break
    for info in infos:
        zc.unregister_service(info)
    zc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
