-- wrk script: GET /v1/analytics/performance/{vehicleId} for random vehicles of the benchmark
-- fleet (EV-00000 … EV-<vehicles-1>), each thread with its own seed.
--   wrk -t2 -c16 -d10s -s performance.lua http://127.0.0.1:8080 -- <vehicles> <end RFC 3339> [<user token>]
local threads = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
  table.insert(threads, thread)
end

function init(args)
  vehicles = tonumber(args[1] or "10000")
  window_end = args[2]
  if args[3] and args[3] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[3]
  end
  math.randomseed(1000 + tid)
end

function request()
  local path = string.format("/v1/analytics/performance/EV-%05d?window=24h&end=%s", math.random(0, vehicles - 1), window_end)
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  io.write(string.format("wrk-summary requests=%d non2xx=%d errors=%d p50us=%d p99us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
