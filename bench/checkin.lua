-- wrk script for bench/checkin.sh: authenticated check-ins of random enrolled devices, the same
-- route and bodies flotilla-load sends. The devices file (flotilla-load --save-devices) has one
-- device per line: "Bearer <secret>" TAB "<check-in JSON>".
--   wrk -t2 -c64 -d10s -s bench/checkin.lua http://127.0.0.1:PORT -- DEVICES_FILE
-- Prints one line at the end: RESULT requests errors seconds p50_ms p90_ms p99_ms p999_ms max_ms.

local devices = {}
local n = 0

function init(args)
  for line in io.lines(args[1]) do
    local auth, body = line:match("^([^\t]+)\t(.+)$")
    if auth then
      n = n + 1
      devices[n] = wrk.format("POST", "/api/v1/check",
        { ["Content-Type"] = "application/json", ["Authorization"] = auth }, body)
    end
  end
  if n == 0 then error("no devices in " .. tostring(args[1])) end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
end

function request()
  return devices[math.random(n)]
end

-- No response() function: with one, wrk collects every response's headers and body for Lua,
-- which its SCRIPTING notes call expensive (it made wrk, not the engine, the bottleneck). wrk
-- counts any status above 399 in errors.status by itself.

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %.3f %.3f %.3f\n",
    summary.requests, errors, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
