-- wrk script: POSTs realistic leads, each with an e-mail no other request uses.
--
--   wrk -t2 -c32 -d10s --latency -s bench/leads.lua URL -- TOKEN TAG [BATCH [POOL]]
--
-- TOKEN is the bearer token, TAG makes this run's e-mails unique, BATCH (default 0) sends
-- {"leads": [...]} with that many leads per request instead of one lead per request.
-- POOL, when given, sends signed webhook deliveries instead (TOKEN, TAG and BATCH are then unused):
-- thread N reads the file POOL.N, one delivery a line, "webhook-id TAB webhook-timestamp TAB
-- webhook-signature TAB body", and sends each line once. bench/webhooks.py signs them before the run
-- and says why. A thread that runs out of lines stops and sends unsigned requests until it does, so
-- the run shows errors rather than retried deliveries; done() reports how many went out that way.
-- done() prints one line "wrk-json: {...}" with the answers counted by status, for batches the
-- number of items the server answered with a lead_id (a refused item's lead_id is null), and the
-- CPU seconds wrk itself used (all threads), to show the load generator is not the bottleneck.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("id", next_id)
   table.insert(threads, thread)
end

local first_names = { "Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Radia", "Tim" }
local last_names = { "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie" }
local titles = { "VP Marketing", "Head of Growth", "Director of Sales", "CTO", "Marketing Manager", "Engineer" }
local countries = { "US", "DE", "GB", "FR", "CA", "NL", "SE", "ES" }
local sources = { "website", "webinar", "paid-search", "linkedin" }
local campaigns = { "spring-launch", "retargeting", "partner-webinar" }
local sizes = { 12, 80, 250, 1200, 5000 }

local function pick(list, n)
   return list[(n % #list) + 1]
end

local function lead(n)
   local first, last = pick(first_names, n), pick(last_names, n * 7 + 3)
   return string.format(
      '{"email":"%s.%s.%s.t%d.%d@example.com","first_name":"%s","last_name":"%s","company":"%s Labs",'
         .. '"title":"%s","country":"%s","company_size":%d,"source":"%s","campaign":"%s"}',
      string.lower(first), string.lower(last), tag, id, n, first, last, last,
      pick(titles, n), pick(countries, n * 3 + 1), pick(sizes, n), pick(sources, n * 5), pick(campaigns, n)
   )
end

function init(args)
   tag = args[2] or "run"
   batch = tonumber(args[3] or "0")
   counter = 0
   statuses = {}
   items = 0
   exhausted = 0
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. (args[1] or "none")
   if args[4] and args[4] ~= "" then
      -- Read a line per request rather than all at init: no start-up cost, no pool held in memory.
      pool = assert(io.open(args[4] .. "." .. id, "r"))
      signed_headers = { ["Content-Type"] = "application/json" }
   end
end

local function signed_request()
   local line = pool:read("*l")
   if line == nil then
      exhausted = exhausted + 1
      wrk.thread:stop()
      return wrk.format(nil, nil, { ["Content-Type"] = "application/json" }, "{}")
   end
   local webhook_id, timestamp, signature, body = string.match(line, "^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
   signed_headers["webhook-id"] = webhook_id
   signed_headers["webhook-timestamp"] = timestamp
   signed_headers["webhook-signature"] = signature
   return wrk.format(nil, nil, signed_headers, body)
end

function request()
   if pool then
      return signed_request()
   end
   local body
   if batch > 0 then
      local parts = {}
      for i = 1, batch do
         counter = counter + 1
         parts[i] = lead(counter)
      end
      body = '{"leads":[' .. table.concat(parts, ",") .. "]}"
   else
      counter = counter + 1
      body = lead(counter)
   end
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
   if batch > 0 and status < 300 then
      local _, found = string.gsub(body, '"lead_id":%s*"', "")
      items = items + found
   end
end

function done(summary, latency, requests)
   local statuses_total = {}
   local items_total = 0
   local exhausted_total = 0
   for _, thread in ipairs(threads) do
      local counted = thread:get("statuses") or {}
      for key, count in pairs(counted) do
         statuses_total[key] = (statuses_total[key] or 0) + count
      end
      items_total = items_total + (thread:get("items") or 0)
      exhausted_total = exhausted_total + (thread:get("exhausted") or 0)
   end
   local parts = {}
   for key, count in pairs(statuses_total) do
      table.insert(parts, string.format('"%s":%d', key, count))
   end
   io.write(string.format(
      'wrk-json: {"requests":%d,"duration_us":%d,"statuses":{%s},"items":%d,"exhausted":%d,"cpu_us":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d}}\n',
      summary.requests, summary.duration, table.concat(parts, ","), items_total, exhausted_total,
      os.clock() * 1000000, summary.errors.connect, summary.errors.read, summary.errors.write,
      summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(95), latency:percentile(99), latency.max
   ))
end
