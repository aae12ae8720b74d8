-- wrk script: one reading a request to POST /v1/telemetry, as a fleet of meters and vehicles
-- reporting once a minute. Every request carries a distinct (device, timestamp), so the number
-- of readings committed equals the number of requests accepted.
--   wrk -t2 -c256 -d10s -s single.lua http://127.0.0.1:8080 -- <devices> <base-unix-seconds> <prefix> <stride> <device token>
local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  devices = tonumber(args[1] or "10000")
  base = tonumber(args[2] or tostring(os.time() - 86400))
  prefix = args[3] or "wrk"
  stride = tonumber(args[4] or "2")
  n = tid
  wrk.method = "POST"
  wrk.path = "/v1/telemetry"
  wrk.headers["Content-Type"] = "application/json"
  if args[5] and args[5] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[5]
  end
end

function request()
  local dev = n % devices
  local k = math.floor(n / devices)
  n = n + stride
  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ", base + k * 60)
  local body
  if dev % 2 == 0 then
    body = string.format('{"meterId":"%s-m-%d","kwhConsumedAc":%.3f,"voltage":%.1f,"timestamp":"%s"}',
      prefix, dev, 0.5 + (n % 100) / 100, 230 + n % 10, ts)
  else
    body = string.format('{"vehicleId":"%s-v-%d","soc":%.1f,"kwhDeliveredDc":%.3f,"batteryTemp":%.1f,"timestamp":"%s"}',
      prefix, dev, n % 100, 0.4 + (n % 90) / 100, 20 + n % 15, ts)
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("wrk-summary requests=%d non2xx=%d errors=%d p50us=%d p90us=%d p99us=%d p999us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
