-- POST /payments, each request paying its own processed order with a unique Idempotency-Key.
-- BENCH_PAY_IDS names a file of "orderId amount" lines; of BENCH_WRK_THREADS threads, thread k
-- takes every line i with i % threads == k - 1. A thread whose orders run out stops (it never pays
-- an order twice) and reports it in exhausted_threads; run.py then says the pool was too small.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

init = function(args)
  orders, sent, paid, exhausted = {}, 0, 0, 0
  local count, line_no = tonumber(os.getenv("BENCH_WRK_THREADS")), 0
  for line in io.lines(os.getenv("BENCH_PAY_IDS")) do
    if line_no % count == tid - 1 then
      local id, amount = line:match("^(%S+) (%S+)$")
      table.insert(orders, { id = id, amount = amount })
    end
    line_no = line_no + 1
  end
  handed = #orders
  headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
  }
end

request = function()
  sent = sent + 1
  local order = orders[sent]
  if order == nil then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/health")
  end
  headers["Idempotency-Key"] = string.format("bench-pay-%s-%s", os.getenv("BENCH_RUN"), order.id)
  return wrk.format("POST", "/payments", headers,
    string.format('{"orderId":"%s","amount":%s}', order.id, order.amount))
end

response = function(status, headers, body)
  if status == 200 then paid = paid + 1 end
end

extra_figures = function()
  local figures = { paid = 0, orders_handed = 0, exhausted_threads = 0 }
  for _, thread in ipairs(threads) do
    figures.paid = figures.paid + thread:get("paid")
    figures.orders_handed = figures.orders_handed + thread:get("handed")
    figures.exhausted_threads = figures.exhausted_threads + thread:get("exhausted")
  end
  return figures
end
