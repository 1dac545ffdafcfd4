-- wrk script: POST /api/v1/recognition/check for one patient and item.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("HUREN_TOKEN") or "")
wrk.headers["X-Patient-Authorization"] = "health_card 1"
wrk.body = '{"patient":"' .. (os.getenv("HUREN_PATIENT") or "") .. '","item_code":"FX-LAB-K"}'
wrk.headers["Accept-Encoding"] = os.getenv("HUREN_ENCODING") or "identity"
