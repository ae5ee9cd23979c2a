-- cargo xtask loadtest: the same request on every call, from the script arguments METHOD PATH [BODY]
-- (the API key and bearer token come as wrk --header options, which wrk.format includes).
local prepared

init = function(args)
  local body = args[3]
  if body ~= nil and body ~= "" then
    wrk.headers["Content-Type"] = "application/json"
  else
    body = nil
  end
  prepared = wrk.format(args[1], args[2], nil, body)
end

request = function()
  return prepared
end
