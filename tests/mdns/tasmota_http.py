"""Answers Tasmota's web API the way a Tasmota 14 device does, for the enrichment-probe test.

    tasmota_http.py ADDRESS MAC
Serves `GET /cm?cmnd=Status%200` on ADDRESS:80 with the Status 0 JSON real firmware sends
(StatusNET.Mac = MAC), counts the requests it answered on stderr, and 404s anything else.
Prints "listening" once bound.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def status0(mac: str) -> bytes:
    return json.dumps({
        "Status": {"Module": 1, "DeviceName": "Kitchen", "FriendlyName": ["Kitchen"], "Topic": "kitchen", "Power": 0},
        "StatusFWR": {"Version": "14.3.0(release-tasmota)", "BuildDateTime": "2024-10-15T10:11:12", "Boot": 31,
                      "Core": "2_7_7", "SDK": "2.2.2-dev(38a443e)", "CpuFrequency": 80, "Hardware": "ESP8266EX"},
        "StatusNET": {"Hostname": "kitchen-5678", "IPAddress": sys.argv[1], "Mac": mac.upper()},
    }).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/cm?cmnd=Status%200":
            body = status0(sys.argv[2])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            print(f"answered {self.path}", file=sys.stderr, flush=True)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = HTTPServer((sys.argv[1], 80), Handler)
    print("listening", flush=True)
    server.serve_forever()
