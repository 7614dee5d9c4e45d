-- Argo CD health of a rollouts.dev RolloutRun (argocd-cm key:
-- resource.customizations.health.rollouts.dev_RolloutRun), from its conditions and status.phase.
local hs = {}

local function find_condition(status, condition_type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function is_true(status, condition_type)
  local condition = find_condition(status, condition_type)
  return condition ~= nil and condition.status == "True"
end

-- What a run that is not finished waits for: the first of its steps that has not succeeded.
local function waiting_for(status)
  for _, condition_type in ipairs({"Synced", "ToolsReady", "InferenceReady", "Complete"}) do
    local condition = find_condition(status, condition_type)
    if condition ~= nil and condition.status ~= "True" then
      return condition.message or condition.reason or ""
    end
  end
  return ""
end

local function progress(status)
  if status.progress ~= nil and status.progress.percent ~= nil then
    return " (" .. status.progress.percent .. " of the rollouts done)"
  end
  return ""
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick the run up"
  return hs
end

if is_true(status, "Failed") or status.phase == "Failed" then
  local failed = find_condition(status, "Failed")
  hs.status = "Degraded"
  if failed ~= nil then
    hs.message = (failed.reason or "Failed") .. ": " .. (failed.message or "")
  else
    hs.message = "The run failed"
  end
  return hs
end

if is_true(status, "Complete") or status.phase == "Succeeded" then
  local complete = find_condition(status, "Complete")
  hs.status = "Healthy"
  if complete ~= nil and complete.message ~= nil then
    hs.message = complete.message
  else
    hs.message = "The run completed"
  end
  return hs
end

if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended: set spec.suspend to false to go on" .. progress(status)
  return hs
end

hs.status = "Progressing"
local detail = waiting_for(status)
if detail ~= "" then
  hs.message = status.phase .. ": " .. detail .. progress(status)
else
  hs.message = status.phase .. progress(status)
end
return hs
