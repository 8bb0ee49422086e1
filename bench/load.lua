-- wrk script for `make bench` (bench/run.py). One file, four modes:
--   wrk ... -s bench/load.lua URL -- MODE key=value ...
--   users             GET /api/users/<id>, ids from ids=<file> (one a line)
--   transfer_seed     POST /api/transfer             {"from","to","amount"}       (express-seed)
--   transfer_project  POST /api/market/transfers     {"from_account",...} + Token + Idempotency-Key
--   mixed             GET /api/blog/posts and GET /api/market/products/<sku>, alternating
-- Every answer outside 2xx is counted (response()) and done() prints one line
-- `BENCH_RESULT {json}` that run.py parses; a sample of the first bad answer is kept.

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local function read_lines(path)
  local out = {}
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  for line in f:lines() do
    if line ~= "" then table.insert(out, line) end
  end
  f:close()
  return out
end

local mode, ids, skus, token, prefix
local counter = 0
local json_headers

function init(args)
  mode = args[1]
  local opts = {}
  for i = 2, #args do
    local k, v = string.match(args[i], "^([%w_]+)=(.*)$")
    if k then opts[k] = v end
  end
  non2xx = 0
  bad_status = 0
  bad_body = ""
  math.randomseed(os.time() * 1000 + tid)
  if opts.ids then ids = read_lines(opts.ids) end
  if opts.skus then skus = read_lines(opts.skus) end
  if opts.token then token = read_lines(opts.token)[1] end
  prefix = (opts.prefix or "k") .. "-" .. tid
  json_headers = {["Content-Type"] = "application/json"}
  if token then json_headers["Authorization"] = "Token " .. token end
  if (mode == "users" or mode == "transfer_seed" or mode == "transfer_project") and not ids then
    error("mode " .. tostring(mode) .. " needs ids=<file>")
  end
end

-- Two distinct accounts, lower id first: a consistent lock order, so the
-- seed's UPDATE-then-UPDATE transfer can never deadlock under concurrency.
local function account_pair()
  local n = #ids
  local i = math.random(1, n - 1)
  local j = math.random(i + 1, n)
  return ids[i], ids[j]
end

function request()
  counter = counter + 1
  if mode == "users" then
    return wrk.format("GET", "/api/users/" .. ids[math.random(1, #ids)])
  elseif mode == "transfer_seed" then
    local a, b = account_pair()
    return wrk.format("POST", "/api/transfer", json_headers,
      '{"from":' .. a .. ',"to":' .. b .. ',"amount":1}')
  elseif mode == "transfer_project" then
    local a, b = account_pair()
    json_headers["Idempotency-Key"] = prefix .. "-" .. counter
    return wrk.format("POST", "/api/market/transfers", json_headers,
      '{"from_account":' .. a .. ',"to_account":' .. b .. ',"amount_cents":1}')
  elseif mode == "mixed" then
    if counter % 2 == 0 then
      return wrk.format("GET", "/api/blog/posts")
    end
    return wrk.format("GET", "/api/market/products/" .. skus[math.random(1, #skus)])
  end
  error("unknown mode " .. tostring(mode))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if bad_status == 0 then
      bad_status = status
      bad_body = string.sub(body or "", 1, 200)
    end
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local bad, sample_status, sample_body = 0, 0, ""
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
    local s = t:get("bad_status") or 0
    if sample_status == 0 and s ~= 0 then
      sample_status = s
      sample_body = t:get("bad_body") or ""
    end
  end
  local e = summary.errors
  io.write("BENCH_RESULT {",
    '"requests":', summary.requests,
    ',"duration_us":', summary.duration,
    ',"non2xx":', bad,
    ',"socket_errors":{"connect":', e.connect, ',"read":', e.read, ',"write":', e.write,
    ',"timeout":', e.timeout, '}',
    ',"latency_us":{"mean":', string.format("%.1f", latency.mean),
    ',"p50":', latency:percentile(50), ',"p90":', latency:percentile(90),
    ',"p99":', latency:percentile(99), ',"max":', latency.max, '}',
    ',"bad_sample":{"status":', sample_status, ',"body":', json_string(sample_body), '}',
    "}\n")
end
