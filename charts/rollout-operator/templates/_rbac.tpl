{{/*
What the operator does in a namespace whose runs it serves.
*/}}
{{- define "rollout-operator.namespacedRules" -}}
# RolloutRuns: watch them, keep Kopf's finalizer and annotations, write the status, and delete a
# run once its ttlSecondsAfterFinished has passed.
- apiGroups: ["rollouts.dev"]
  resources: ["rolloutruns"]
  verbs: ["list", "watch", "patch", "delete"]
- apiGroups: ["rollouts.dev"]
  resources: ["rolloutruns/status"]
  verbs: ["patch"]
# A run's children: the sync, worker and aggregate Jobs, the tool and inference servers. A
# queued worker Job is deleted when its run is suspended (Kueue would resume it).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "delete"]
# Pods of a run's Jobs and servers: their termination reports and failure reasons.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Whether the Secrets a run references exist: their metadata is listed and watched
# (PartialObjectMetadata), their data never reaches the operator.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
# Milestone Events on runs.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Kueue's Workloads of queued worker Jobs: why Kueue has not admitted them yet.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
{{- end }}
{{/*
Kopf peering among several replicas; the argument is the peering resource (plural).
*/}}
{{- define "rollout-operator.peeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ . | quote }}]
  verbs: ["list", "watch", "patch", "create"]
{{- end }}
