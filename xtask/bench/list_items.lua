-- GET the first page of 50 items.
wrk.method = "GET"
wrk.path = "/items?page_size=50"
