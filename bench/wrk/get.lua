-- GET the URL's path as a random prepared user (their bearer token): /transactions/balance,
-- /auth/verify, and /health/live (which ignores the token) for the same request shape.
--   WRK_USERS=users.tsv wrk -t2 -c16 -d10s -s bench/wrk/get.lua http://HOST:PORT/transactions/balance
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local prepared = require("users")

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

function init(args)
  users = prepared.load()
  math.randomseed(os.time() * 1000 + (thread_number or 0))
end

function request()
  local user = users[math.random(#users)]
  return wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. user.token })
end
