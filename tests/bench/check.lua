-- wrk script: POST /api/v1/recognition/check for one patient and item.
-- HUREN_PATIENT_AUTHORIZATION is the X-Patient-Authorization value the server issued when the
-- patient's consent was recorded (POST /api/v1/consents: its "authorization"); a code it did
-- not issue is refused 403.
local auth = os.getenv("HUREN_PATIENT_AUTHORIZATION")
if auth == nil or auth == "" then
  error("set HUREN_PATIENT_AUTHORIZATION to the issued value (POST /api/v1/consents)")
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("HUREN_TOKEN") or "")
wrk.headers["X-Patient-Authorization"] = auth
wrk.body = '{"patient":"' .. (os.getenv("HUREN_PATIENT") or "") .. '","item_code":"FX-LAB-K"}'
wrk.headers["Accept-Encoding"] = os.getenv("HUREN_ENCODING") or "identity"
