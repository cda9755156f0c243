{{/* Chart name. */}}
{{- define "postern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: <release>-postern, or the release name when it already says postern. */}}
{{- define "postern.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Object names per component (the suffix keeps them below 63 characters). */}}
{{- define "postern.controller.fullname" -}}
{{- printf "%s-controller" (include "postern.fullname" . | trunc 52 | trimSuffix "-") -}}
{{- end -}}
{{- define "postern.gateway.fullname" -}}
{{- printf "%s-gateway" (include "postern.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "postern.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "postern.labels" -}}
helm.sh/chart: {{ include "postern.chart" . }}
app.kubernetes.io/name: {{ include "postern.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: postern
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of a component: include with (dict "ctx" $ "component" "gateway"). */}}
{{- define "postern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postern.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{- define "postern.componentLabels" -}}
{{ include "postern.labels" .ctx }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{- define "postern.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (include "postern.controller.fullname" .) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "postern.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "postern.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: include with (dict "ctx" $ "image" .Values.gateway.image). */}}
{{- define "postern.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Soft anti-affinity across nodes, used when the component sets no affinity. */}}
{{- define "postern.defaultAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "postern.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/* The downward-API environment both binaries read (POD_NAME, POD_NAMESPACE, POD_UID). */}}
{{- define "postern.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef: {fieldPath: metadata.namespace}
- name: POD_UID
  valueFrom:
    fieldRef: {fieldPath: metadata.uid}
{{- end -}}

{{/* A PodDisruptionBudget budget: maxUnavailable when set, else minAvailable.
     Include with (dict "pdb" .Values.x.podDisruptionBudget). */}}
{{- define "postern.pdbBudget" -}}
{{- if not (kindIs "invalid" .pdb.maxUnavailable) -}}
maxUnavailable: {{ .pdb.maxUnavailable }}
{{- else -}}
minAvailable: {{ .pdb.minAvailable }}
{{- end -}}
{{- end -}}

{{/* policy/v1 from Kubernetes 1.21, policy/v1beta1 before. */}}
{{- define "postern.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/* The namespaces the controller manages; empty means every namespace. */}}
{{- define "postern.watchNamespaces" -}}
{{- join "," .Values.controller.watchNamespaces -}}
{{- end -}}

{{/* NetworkPolicy egress rules both components need: DNS and the API server. */}}
{{- define "postern.np.egressBase" -}}
# DNS.
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
# The Kubernetes API server.
- ports:
    {{- range .apiServer.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  {{- with .apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* The gateway's shutdownGrace in whole seconds, rounded up (500ms, 15s, 1m30s, 1.5h). */}}
{{- define "postern.gateway.shutdownGraceSeconds" -}}
{{- ceil (divf (include "postern.durationMs" .Values.gateway.shutdownGrace | float64) 1000.0) | int -}}
{{- end -}}

{{/* The gateway Pod's terminationGracePeriodSeconds: preStop delay + shutdownGrace + 10 s
     to send the last 421s and withdraw the report, unless set; a value too short to let
     the drain finish is refused. */}}
{{- define "postern.gateway.terminationGrace" -}}
{{- $g := .Values.gateway -}}
{{- $preStop := int (dig "preStopDelaySeconds" 5 $g) -}}
{{- $need := add $preStop (include "postern.gateway.shutdownGraceSeconds" . | int) -}}
{{- if kindIs "invalid" $g.terminationGracePeriodSeconds -}}
{{- add $need 10 -}}
{{- else if lt (int $g.terminationGracePeriodSeconds) $need -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds=%d is shorter than gateway.preStopDelaySeconds (%d) + gateway.shutdownGrace (%s): the kubelet would kill sessions the gateway is still draining; raise it to at least %d, or leave it null" (int $g.terminationGracePeriodSeconds) $preStop $g.shutdownGrace $need) -}}
{{- else -}}
{{- $g.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* autoscaling/v2 where the cluster serves it (1.23+), autoscaling/v2beta2 before. */}}
{{- define "postern.hpaApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "autoscaling/v2" -}}
autoscaling/v2
{{- else -}}
autoscaling/v2beta2
{{- end -}}
{{- end -}}

{{/* A duration (500ms, 15s, 1m30s, 1.5h: the controller's grammar) in milliseconds, as a
     string; include with the duration. */}}
{{- define "postern.durationMs" -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h)" (toString .) -1 -}}
{{- $n := float64 (regexFind "^[0-9]+(\\.[0-9]+)?" .) -}}
{{- $unit := regexFind "(ms|s|m|h)$" . -}}
{{- $scale := dict "ms" 1.0 "s" 1000.0 "m" 60000.0 "h" 3600000.0 -}}
{{- $total = addf $total (mulf $n (get $scale $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* Leader-election timings the controller would refuse at start fail the install
     instead (the schema cannot compare two fields). */}}
{{- define "postern.controller.checkLeaderElection" -}}
{{- $le := .Values.controller.leaderElection -}}
{{- if $le.enabled -}}
{{- $lease := float64 (include "postern.durationMs" $le.leaseDuration) -}}
{{- $renew := float64 (include "postern.durationMs" $le.renewDeadline) -}}
{{- $retry := float64 (include "postern.durationMs" $le.retryPeriod) -}}
{{- if ge $renew $lease -}}
{{- fail (printf "controller.leaderElection.renewDeadline (%s) must be shorter than controller.leaderElection.leaseDuration (%s): a leader must stop writing before a standby may take over, and the controller refuses to start otherwise" $le.renewDeadline $le.leaseDuration) -}}
{{- end -}}
{{- if ge $retry $renew -}}
{{- fail (printf "controller.leaderElection.retryPeriod (%s) must be shorter than controller.leaderElection.renewDeadline (%s): the leader must get to retry a failed renewal before its deadline" $le.retryPeriod $le.renewDeadline) -}}
{{- end -}}
{{- end -}}
{{- end -}}
