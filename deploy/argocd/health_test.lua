-- Tests of health.lua, run with plain Lua interpreters (tests/tests/helm_gitops.rs runs
-- `lua5.1` — Argo CD's interpreter speaks Lua 5.1 — and `lua5.4`:
-- `lua5.1 deploy/argocd/health_test.lua [case.lua...]`). The script runs as Argo CD runs it:
-- a chunk with `obj` in its environment that returns a table {status, message}.
-- Extra arguments are files that return {name=..., obj=..., status=..., message=...}
-- (objects as the real controller wrote them, produced by the Rust test).

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local source = assert(io.open(dir .. "/health.lua")):read("*a")

-- A fresh chunk per object, with only what Argo CD's sandbox offers in its environment.
local function health(obj)
  local env = { obj = obj, ipairs = ipairs, pairs = pairs, tostring = tostring,
                tonumber = tonumber, type = type, string = string, table = table, math = math }
  local chunk
  if setfenv then -- Lua 5.1
    chunk = assert(loadstring(source, "health.lua"))
    setfenv(chunk, env)
  else
    chunk = assert(load(source, "health.lua", "t", env))
  end
  return chunk()
end

local function cond(type_, status, reason, message, gen)
  return { type = type_, status = status, reason = reason, message = message or "",
           lastTransitionTime = "2026-01-01T00:00:00Z", observedGeneration = gen or 1 }
end

local function object(conditions, generation)
  return { apiVersion = "postern.dev/v1alpha1", kind = "Listener",
           metadata = { name = "submission", namespace = "mail", generation = generation or 1 },
           status = conditions and { conditions = conditions } or nil }
end

local all_true = {
  cond("Accepted", "True", "Accepted"), cond("ResolvedRefs", "True", "ResolvedRefs"),
  cond("Programmed", "True", "Programmed", "2/2 gateways programmed"),
  cond("Ready", "True", "Ready", "2/2 gateways programmed"),
}

local cases = {
  { name = "no status yet", obj = object(nil), status = "Progressing",
    message = "Waiting for the Postern controller" },
  { name = "status without conditions", obj = { metadata = { generation = 1 }, status = {} },
    status = "Progressing" },
  { name = "no Ready condition yet", obj = object({ cond("Accepted", "True", "Accepted") }),
    status = "Progressing", message = "Waiting for the Ready condition" },
  { name = "ready", obj = object(all_true), status = "Healthy",
    message = "Ready: 2/2 gateways programmed" },
  { name = "ready, but for an older generation", obj = object(all_true, 2),
    status = "Progressing", message = "generation 1, the object is at generation 2" },
  { name = "ready without observedGeneration", obj = object({ { type = "Ready", status = "True", reason = "Ready" } }, 5),
    status = "Healthy", message = "Ready" },
  { name = "gateways still rolling out", obj = object({ cond("Ready", "False", "Pending", "1/2 gateways programmed") }),
    status = "Progressing", message = "Pending: 1/2 gateways programmed" },
  { name = "no gateway yet", obj = object({ cond("Ready", "False", "NoGateways", "no ready gateway reports") }),
    status = "Progressing", message = "NoGateways" },
  { name = "a CRL not fetched yet", obj = object({ cond("Ready", "False", "NotFetched", "the gateways have not fetched this CRL yet") }),
    status = "Progressing", message = "NotFetched" },
  { name = "a stale CRL", obj = object({ cond("Ready", "False", "CrlStale", "the CRL in force is past its nextUpdate") }),
    status = "Degraded", message = "CrlStale: the CRL in force" },
  { name = "unknown", obj = object({ cond("Ready", "Unknown", "Reconciling") }), status = "Progressing" },
  { name = "a missing Secret", obj = object({ cond("Ready", "False", "SecretNotFound", "spec.tls.certificateSecretRef: secret gateway-tls not found") }),
    status = "Degraded", message = "SecretNotFound: spec.tls.certificateSecretRef: secret gateway-tls not found" },
  { name = "a bad filter", obj = object({ cond("Ready", "False", "InvalidFilter", "spec.smtpAuthQuery.filter: unknown placeholder {x}") }),
    status = "Degraded", message = "InvalidFilter" },
  { name = "a gateway refused it", obj = object({ cond("Ready", "False", "GatewayRefused", "gw-1 refused it: bind 0.0.0.0:25: permission denied") }),
    status = "Degraded", message = "GatewayRefused: gw-1 refused it" },
  { name = "reason without message", obj = object({ cond("Ready", "False", "PortConflict", nil) }),
    status = "Degraded", message = "PortConflict" },
  { name = "message null (as v1.20 API servers may store it)", obj = object({ { type = "Ready", status = "False", reason = "RefNotFound", observedGeneration = 1 } }),
    status = "Degraded", message = "RefNotFound" },
  { name = "the Ready condition is found among others in any order", obj = object({
      cond("Ready", "True", "Ready", "ok"), cond("Accepted", "True", "Accepted") }),
    status = "Healthy" },
}

for i = 1, #arg do
  local case = assert(dofile(arg[i]))
  case.name = case.name or arg[i]
  cases[#cases + 1] = case
end

local passed, failed = 0, 0
for _, c in ipairs(cases) do
  local ok, hs = pcall(health, c.obj)
  local problem = nil
  if not ok then
    problem = "error: " .. tostring(hs)
  elseif hs.status ~= c.status then
    problem = "status " .. tostring(hs.status) .. " (" .. tostring(hs.message) .. "), expected " .. c.status
  elseif c.message and not string.find(hs.message or "", c.message, 1, true) then
    problem = "message " .. string.format("%q", tostring(hs.message)) .. " lacks " .. string.format("%q", c.message)
  end
  if problem then
    failed = failed + 1
    print("FAIL " .. c.name .. ": " .. problem)
  else
    passed = passed + 1
    print("ok   " .. c.name)
  end
end
print(passed .. " passed, " .. failed .. " failed")
os.exit(failed == 0 and 0 or 1)
