-- POST the URL's path (/transactions/transfers) as a random sender to a random other user,
-- with an Idempotency-Key no other request of any run shares.
--   WRK_USERS=users.tsv wrk -t2 -c16 -d10s -s bench/wrk/transfer.lua http://HOST:PORT/transactions/transfers
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local prepared = require("users")

local counter = 0
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

function init(args)
  users = prepared.load()
  math.randomseed(os.time() * 1000 + (thread_number or 0))
  -- Unique across threads (their number) and runs (the time and a random part).
  prefix = string.format("wrk-%d-%d-%d", os.time(), thread_number or 0, math.random(1, 1000000000))
end

function request()
  counter = counter + 1
  local n = #users
  local sender = math.random(n)
  local recipient = math.random(n - 1)
  if recipient >= sender then
    recipient = recipient + 1
  end
  local body = string.format(
    '{"to_email":"%s","amount":%d,"currency":"USD"}', users[recipient].email, math.random(1, 10)
  )
  return wrk.format("POST", wrk.path, {
    ["Authorization"] = "Bearer " .. users[sender].token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. "-" .. counter,
  }, body)
end
