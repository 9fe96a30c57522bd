-- The product read sent straight to the product-service (no gateway), for the overhead ratio.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"query Product($id: ID!) { product(id: $id) { id name price description createdAt updatedAt } }","variables":{"id":"1"}}'
