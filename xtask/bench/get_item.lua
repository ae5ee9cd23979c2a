-- GET /items/{id} with an id drawn uniformly from the seeded ones (1..N, N = first script arg).
local max_id = 10000
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

init = function(args)
  max_id = tonumber(args[1]) or max_id
  math.randomseed(os.time() * 1000 + (thread_number or 0))
end

request = function()
  return wrk.format("GET", "/items/" .. math.random(1, max_id))
end
