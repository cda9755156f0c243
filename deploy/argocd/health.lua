-- Argo CD health of a Postern object (postern.dev/v1alpha1: LdapProfile, SmtpAuthProfile,
-- MailFlowPolicy, Listener, CrlSource), from its Ready condition.
--
--   Healthy      Ready=True for the object's current generation
--   Progressing  no status yet, status of an older generation, Ready=Unknown, or Ready=False
--                only because the gateways have not picked the configuration up yet
--                (Pending, NoGateways) or not fetched a CRL yet (NotFetched)
--   Degraded     Ready=False for any other reason: the spec is wrong (InvalidValue,
--                InvalidFilter, PortConflict...), a reference does not resolve
--                (RefNotFound, SecretNotFound...), a gateway refused the configuration
--                (GatewayRefused) or a CRL cannot be had (FetchFailed, CrlStale). The
--                message names the field and what to do.
--
-- Installed as resource.customizations.health.postern.dev_<Kind> (deploy/argocd/argocd-cm.yaml).
local hs = {}
local waiting = { Pending = true, NoGateways = true, NotFetched = true }

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Postern controller to report status"
  return hs
end

local ready = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Status is of generation " .. tostring(ready.observedGeneration) ..
    ", the object is at generation " .. tostring(generation)
  return hs
end

local reason = ready.reason or ""
local message = ready.message or ""
if message == "" then
  message = reason
elseif reason ~= "" then
  message = reason .. ": " .. message
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and not waiting[reason] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
