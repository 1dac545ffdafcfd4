-- wrk script: POST /api/v1/ecg with a fresh document UID per request (each upload is a new
-- ECG, so every request goes through parse → group commit → 201).
local template = nil
local pre, post = nil, nil
local counter = 0
local token = os.getenv("HUREN_TOKEN") or ""
local file = os.getenv("HUREN_ECG") or "fixtures/ecg/aecg-zh-patient.xml"
local uid = "7d1c2a10-5a9b-4f3e-9a51-000000000001"
-- Four hex digits that keep the UIDs of separate wrk runs apart (warm-up vs measured).
local salt = os.getenv("HUREN_UID_SALT") or "4f3e"

function setup(thread)
  thread:set("tid", math.random(1, 1000000))
end

function init(args)
  local f = assert(io.open(file, "rb"))
  template = f:read("*a")
  f:close()
  local s, e = string.find(template, uid, 1, true)
  pre = string.sub(template, 1, s - 1)
  post = string.sub(template, e + 1)
end

function request()
  counter = counter + 1
  local id = string.format("7d1c2a10-%04x-%s-9a51-%012d", tid % 65536, salt, counter)
  return wrk.format("POST", "/api/v1/ecg",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/xml" },
    pre .. id .. post)
end

function response(status, headers, body)
  if status ~= 201 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
