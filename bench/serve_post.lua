-- wrk: POST the picture named by $FERRITE_PICTURE to /v1/analyze.
local file = assert(io.open(os.getenv("FERRITE_PICTURE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "image/jpeg"
