-- POST /orders with the benchmark token and a unique Idempotency-Key per request.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
local counter = 0
local thread_id = 0
setup = function(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end
request = function()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
    ["Idempotency-Key"] = string.format("bench-%s-%d-%d", os.getenv("BENCH_RUN"), tid or 0, counter),
  }
  return wrk.format("POST", "/orders", headers, '{"productId":"1","quantity":1}')
end
