-- Shared by the wrk scripts: the prepared users, read once per thread at init from the file
-- named by WRK_USERS (one "access-token<TAB>email" line per registered, funded user).
local M = {}

function M.load()
  local path = os.getenv("WRK_USERS")
  if path == nil or path == "" then
    error("WRK_USERS must name the users file that bench/wrk_suite.py writes")
  end
  local users = {}
  for line in io.lines(path) do
    local token, email = line:match("^(%S+)\t(%S+)$")
    if token then
      users[#users + 1] = { token = token, email = email }
    end
  end
  if #users < 2 then
    error("WRK_USERS names a file with fewer than two users: " .. path)
  end
  return users
end

return M
